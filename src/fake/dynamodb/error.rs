//! What the engine answers instead of a result: DynamoDB's error code and its message, worded as AWS words them
//! (sources: the API reference, moto's `dynamodb/exceptions.py`, and captures against DynamoDB), plus what some
//! errors carry (the item of a failed condition, a transaction's cancellation reasons).

use serde_json::{Value as Json, json};

use super::value::{Item, item_to_json};

/// A cancelled transaction's answer for one of its actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// `None`, `ConditionalCheckFailed` or `ValidationError`.
    pub code: &'static str,
    pub message: Option<String>,
    pub item: Option<Item>,
}

impl Reason {
    pub const NONE: Self = Self { code: "None", message: None, item: None };

    fn to_json(&self) -> Json {
        let mut reason = json!({ "Code": self.code });
        if let Some(message) = &self.message {
            reason["Message"] = json!(message);
        }
        if let Some(item) = &self.item {
            reason["Item"] = item_to_json(item);
        }
        reason
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// With ReturnValuesOnConditionCheckFailure ALL_OLD: the item the condition was checked against.
    pub item: Option<Item>,
    pub reasons: Vec<Reason>,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), item: None, reasons: Vec::new() }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// A table that does not exist, as the item operations word it.
    pub fn no_table() -> Self {
        Self::new("ResourceNotFoundException", "Requested resource not found")
    }

    pub fn condition_failed(item: Option<Item>) -> Self {
        Self { item, ..Self::new("ConditionalCheckFailedException", "The conditional request failed") }
    }

    pub fn cancelled(reasons: Vec<Reason>) -> Self {
        let codes: Vec<&str> = reasons.iter().map(|r| r.code).collect();
        let message = format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        );
        Self { reasons, ..Self::new("TransactionCanceledException", message) }
    }

    /// The same refusal as a cancellation reason, for a transaction's action.
    pub fn as_reason(&self) -> Reason {
        match self.code {
            "ConditionalCheckFailedException" => {
                Reason { code: "ConditionalCheckFailed", message: Some(self.message.clone()), item: self.item.clone() }
            }
            _ => Reason { code: "ValidationError", message: Some(self.message.clone()), item: None },
        }
    }

    /// Prefixes the message, as DynamoDB does for a value refused inside ExpressionAttributeValues.
    pub fn for_value_key(self, key: &str) -> Self {
        Self::validation(format!("ExpressionAttributeValues contains invalid value: {} for key {key}", self.message))
    }

    /// The JSON error body the SDK parses: `__type` names the code.
    pub fn body(&self) -> Json {
        let mut body = json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{}", self.code),
            "message": self.message,
        });
        if let Some(item) = &self.item {
            body["Item"] = item_to_json(item);
        }
        if !self.reasons.is_empty() {
            body["CancellationReasons"] = Json::Array(self.reasons.iter().map(Reason::to_json).collect());
        }
        body
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Messages used in more than one place.
pub mod text {
    pub const ITEM_TOO_LARGE: &str = "Item size has exceeded the maximum allowed size";
    pub const UPDATED_ITEM_TOO_LARGE: &str = "Item size to update has exceeded the maximum allowed size";
    pub const KEY_MISMATCH: &str = "The provided key element does not match the schema";
    pub const INVALID_DOCUMENT_PATH: &str = "The document path provided in the update expression is invalid for update";
    pub const INCORRECT_DATA_TYPE: &str = "An operand in the update expression has an incorrect data type";
    pub const MISSING_OPERAND: &str = "The provided expression refers to an attribute that does not exist in the item";
    pub const DUPLICATE_KEYS: &str = "Provided list of item keys contains duplicates";
}
