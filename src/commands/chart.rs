//! `report --plot`: a month's billing as an SVG chart. Above, paths billed and paths requested per day: the gap is
//! what merging saved. Below, the month's paths billed so far against CloudFront's free paths: where the line
//! crosses the free tier, invalidations start to cost money.

use anyhow::anyhow;
use cf_invalidator::plan::FREE_PATHS_PER_MONTH;
use cf_invalidator::ports::ledger::MonthBilling;
use plotters::prelude::*;

/// Width and height in pixels.
pub const SIZE: (u32, u32) = (900, 640);

const BILLED: RGBColor = RGBColor(31, 119, 180);
const REQUESTED: RGBColor = RGBColor(150, 150, 150);
const FREE_TIER: RGBColor = RGBColor(214, 39, 40);

/// The chart as an SVG document; `dollars` is the month's estimate, each account past its own free paths.
pub fn render(billing: &MonthBilling, dollars: f64) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw(billing, dollars, SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())
        .map_err(|e| anyhow!("cannot draw the chart: {e}"))?;
    Ok(svg)
}

/// Day of the month, paths billed, paths requested.
type Day = (u32, u64, u64);

/// Which figure of a day a series draws.
type Measure = fn(&Day) -> u64;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(billing: &MonthBilling, dollars: f64, root: Area) -> DrawResult {
    root.fill(&WHITE)?;
    let (per_day, cumulative) = root.split_vertically(SIZE.1 / 2);
    let days = days_in(&billing.month);
    let recorded: Vec<Day> = billing
        .days
        .iter()
        .filter_map(|(day, b)| Some((day.get(8..10)?.parse().ok()?, b.paths_billed, b.paths_requested)))
        .collect();
    // A day without invalidations is a zero, not a gap to draw a line across.
    let last = recorded.iter().map(|d| d.0).max().unwrap_or(0);
    let daily: Vec<Day> =
        (1..=last).map(|day| recorded.iter().find(|d| d.0 == day).copied().unwrap_or((day, 0, 0))).collect();
    draw_per_day(&per_day, &billing.month, days, &daily)?;
    draw_cumulative(&cumulative, days, &daily, dollars)?;
    root.present()
}

fn draw_per_day(area: &Area, month: &str, days: u32, daily: &[Day]) -> DrawResult {
    let top = daily.iter().map(|&(_, billed, requested)| billed.max(requested)).max().unwrap_or(0).max(10);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{month}: paths per day"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(1..days, 0..top + top / 10)?;
    chart.configure_mesh().x_desc("day of the month (UTC)").y_desc("paths").draw()?;
    let series: [(&str, RGBColor, Measure); 2] = [
        ("paths requested (one invalidation per message)", REQUESTED, |&(_, _, requested)| requested),
        ("paths billed", BILLED, |&(_, billed, _)| billed),
    ];
    for (label, color, value) in series {
        let points: Vec<(u32, u64)> = daily.iter().map(|d| (d.0, value(d))).collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&point| Circle::new(point, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()
}

fn draw_cumulative(area: &Area, days: u32, daily: &[Day], dollars: f64) -> DrawResult {
    let running: Vec<(u32, u64)> = daily
        .iter()
        .scan(0, |total, &(day, billed, _)| {
            *total += billed;
            Some((day, *total))
        })
        .collect();
    let billed = running.last().map_or(0, |&(_, total)| total);
    let top = billed.max(FREE_PATHS_PER_MONTH) * 11 / 10;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("paths billed this month against the free tier: {billed}, estimated ${dollars:.2}"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(1..days, 0..top)?;
    chart.configure_mesh().x_desc("day of the month (UTC)").y_desc("paths billed so far").draw()?;
    chart
        .draw_series(LineSeries::new([(1, FREE_PATHS_PER_MONTH), (days, FREE_PATHS_PER_MONTH)], FREE_TIER))?
        .label(format!("free paths ({FREE_PATHS_PER_MONTH} a month, per account)"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FREE_TIER));
    chart
        .draw_series(LineSeries::new(running.iter().copied(), BILLED.stroke_width(2)))?
        .label("paths billed so far")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BILLED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// Days in a `YYYY-MM` month (Gregorian).
fn days_in(month: &str) -> u32 {
    let year: u32 = month.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2001);
    match month.get(5..7).and_then(|m| m.parse::<u32>().ok()) {
        Some(2) if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        Some(2) => 28,
        Some(4 | 6 | 9 | 11) => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use cf_invalidator::ports::ledger::Billing;

    use super::*;

    fn day(billed: u64, requested: u64) -> Billing {
        Billing { batches: 1, messages: 1, paths_billed: billed, paths_requested: requested, ..Billing::default() }
    }

    #[test]
    fn the_chart_has_its_size_both_series_and_labelled_axes() {
        let billing = MonthBilling::new(
            "2026-12",
            day(1_500, 9_000),
            Vec::new(),
            vec![("2026-12-01".into(), day(700, 4_000)), ("2026-12-04".into(), day(800, 5_000))],
        );
        let svg = render(&billing, 2.5).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(r#"width="900""#) && svg.contains(r#"height="640""#));
        for text in [
            "day of the month (UTC)",
            "paths billed so far",
            "paths billed",
            "paths requested (one invalidation per message)",
            "free paths (1000 a month, per account)",
            "estimated $2.50",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 4, "two series per panel and the free tier line");
    }

    #[test]
    fn months_have_their_own_length() {
        assert_eq!([days_in("2026-02"), days_in("2028-02"), days_in("2026-04"), days_in("2026-12")], [28, 29, 30, 31]);
    }
}
