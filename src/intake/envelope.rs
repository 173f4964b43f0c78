//! Recognising what a producer put on the queue: our own request, an S3 event notification (direct, or inside
//! an SNS envelope), an S3 event delivered by EventBridge, or S3's test message (aws-facts.md E1–E3).

use serde_json::Value;

/// An object an S3 event is about, its key decoded to the object's real name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// Our request format (possibly delivered through SNS).
    Native(Value),
    /// Objects created or removed.
    S3Objects(Vec<S3Object>),
    /// Nothing to invalidate: S3's `s3:TestEvent`, or an S3 event about something other than object contents.
    Ignorable(&'static str),
}

/// How a body reached the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Sent to the queue itself, or by SNS with raw message delivery (which carries no envelope to check).
    Direct,
    /// In an SNS envelope, from this topic (`None`: the envelope names none).
    Sns { topic_arn: Option<String> },
}

/// Unwraps one SQS body. An SNS envelope (`Type: Notification`) is opened once; SNS raw delivery needs nothing.
pub fn open(body: Value) -> Result<(Envelope, Via), String> {
    if body.get("Type").and_then(Value::as_str) == Some("SubscriptionConfirmation") {
        return Err("an SNS subscription confirmation, not a notification: confirm the subscription (visit its \
                    SubscribeURL) for the topic's notifications to arrive"
            .into());
    }
    if body.get("Type").and_then(Value::as_str) == Some("Notification") {
        let topic_arn = body.get("TopicArn").and_then(Value::as_str).map(str::to_owned);
        let inner = body.get("Message").and_then(Value::as_str).ok_or("SNS notification without a Message string")?;
        let inner: Value = serde_json::from_str(inner).map_err(|e| format!("SNS Message is not JSON: {e}"))?;
        return Ok((open_unwrapped(inner)?, Via::Sns { topic_arn }));
    }
    Ok((open_unwrapped(body)?, Via::Direct))
}

fn open_unwrapped(body: Value) -> Result<Envelope, String> {
    if body.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Envelope::Ignorable("s3:TestEvent"));
    }
    if let Some(records) = body.get("Records").and_then(Value::as_array) {
        return s3_notification(records);
    }
    if body.get("source").and_then(Value::as_str) == Some("aws.s3") && body.get("detail-type").is_some() {
        return eventbridge(&body);
    }
    Ok(Envelope::Native(body))
}

/// S3 event notification records. Keys arrive form-urlencoded (`red flower.jpg` is `red+flower.jpg`).
fn s3_notification(records: &[Value]) -> Result<Envelope, String> {
    let mut objects = Vec::new();
    for record in records {
        let event = record.get("eventName").and_then(Value::as_str).unwrap_or_default();
        // Lifecycle expiration removes an object's contents as a delete does.
        let changes_contents = ["ObjectCreated:", "ObjectRemoved:", "LifecycleExpiration:"];
        if !changes_contents.iter().any(|kind| event.starts_with(kind)) {
            continue;
        }
        let s3 = record.get("s3").ok_or("S3 record without an s3 field")?;
        let bucket = s3.pointer("/bucket/name").and_then(Value::as_str).ok_or("S3 record without bucket.name")?;
        let key = s3.pointer("/object/key").and_then(Value::as_str).ok_or("S3 record without object.key")?;
        objects.push(S3Object { bucket: bucket.to_owned(), key: nonempty(form_decode(key)?)? });
    }
    if objects.is_empty() {
        return Ok(Envelope::Ignorable("S3 event without created or removed objects"));
    }
    Ok(Envelope::S3Objects(objects))
}

/// An S3 event through EventBridge (kebab-case `detail`). Its key is taken as the object's name: unlike event
/// notifications, AWS documents no URL encoding for it (aws-facts.md E3, unverified).
fn eventbridge(event: &Value) -> Result<Envelope, String> {
    let kind = event.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if kind != "Object Created" && kind != "Object Deleted" {
        return Ok(Envelope::Ignorable("EventBridge S3 event other than Object Created/Deleted"));
    }
    let detail = event.get("detail").ok_or("EventBridge event without detail")?;
    let bucket =
        detail.pointer("/bucket/name").and_then(Value::as_str).ok_or("EventBridge event without bucket.name")?;
    let key = detail.pointer("/object/key").and_then(Value::as_str).ok_or("EventBridge event without object.key")?;
    Ok(Envelope::S3Objects(vec![S3Object { bucket: bucket.to_owned(), key: nonempty(key.to_owned())? }]))
}

/// S3 has no object with an empty key; an event naming one is forged or broken, and would invalidate `/`.
fn nonempty(key: String) -> Result<String, String> {
    if key.is_empty() { Err("S3 event with an empty object key".into()) } else { Ok(key) }
}

fn form_decode(key: &str) -> Result<String, String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("S3 object key {key:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(key: &str) -> Value {
        json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "site"}, "object": {"key": key, "size": 5}}}]})
    }

    fn objects((envelope, _): (Envelope, Via)) -> Vec<S3Object> {
        match envelope {
            Envelope::S3Objects(objects) => objects,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_notification_keys() {
        let found = objects(open(notification("docs/red+flower%2B%C3%A9t%C3%A9.html")).unwrap());
        assert_eq!(found, [S3Object { bucket: "site".into(), key: "docs/red flower+été.html".into() }]);
    }

    #[test]
    fn opens_sns_envelopes_around_s3_events_and_native_requests() {
        let sns = |inner: Value| json!({"Type": "Notification", "MessageId": "1", "TopicArn": "arn:t", "Message": inner.to_string()});
        let found = objects(open(sns(notification("a+b"))).unwrap());
        assert_eq!(found[0].key, "a b");
        let native = json!({"distribution_id": "E1", "paths": ["/a"]});
        let via = Via::Sns { topic_arn: Some("arn:t".into()) };
        assert_eq!(open(sns(native.clone())).unwrap(), (Envelope::Native(native.clone()), via));
        assert_eq!(open(native.clone()).unwrap(), (Envelope::Native(native), Via::Direct));
    }

    #[test]
    fn reads_eventbridge_keys_as_they_are() {
        let event = json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "site"}, "object": {"key": "red flower+x.html"}}});
        assert_eq!(objects(open(event).unwrap())[0].key, "red flower+x.html");
    }

    #[test]
    fn ignores_test_events_and_other_event_kinds() {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "site"});
        assert_eq!(open(test).unwrap().0, Envelope::Ignorable("s3:TestEvent"));
        let tagging = json!({"Records": [{"eventName": "ObjectTagging:Put", "s3": {}}]});
        assert!(matches!(open(tagging).unwrap().0, Envelope::Ignorable(_)));
        let mut expired = notification("old.html");
        expired["Records"][0]["eventName"] = "LifecycleExpiration:Delete".into();
        assert_eq!(objects(open(expired).unwrap())[0].key, "old.html", "an expiration removes contents");
    }

    #[test]
    fn names_what_is_missing() {
        let broken = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]});
        assert_eq!(open(broken), Err("S3 record without object.key".into()));
        let bad_sns = json!({"Type": "Notification", "Message": "not json"});
        assert!(open(bad_sns).unwrap_err().starts_with("SNS Message is not JSON"));
        assert_eq!(open(notification("")), Err("S3 event with an empty object key".into()));
        let confirmation = json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm"});
        assert!(open(confirmation).unwrap_err().contains("confirm the subscription"));
    }
}
