use cf_invalidator::aws::dynamodb::create_table;
use cf_invalidator::aws::sqs::create_queue_with_dead_letter;

use super::output::outln;
use crate::cli::SetupArgs;

pub async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let config = super::aws_config().await?;
    let queues = create_queue_with_dead_letter(&super::sqs(&config), &args.queue_name, args.max_receive_count).await?;
    create_table(&super::dynamodb(&config), &args.table).await?;
    outln!("queue_url={}", queues.queue_url)?;
    outln!("dlq_url={}", queues.dead_letter_url)?;
    outln!("table={}", args.table)
}
