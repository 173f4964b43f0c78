//! Recursive-descent parsers for DynamoDB's expression grammar ("Expressions" in the developer guide).
//!
//! ```text
//! condition  := and ("OR" and)*            and := not ("AND" not)*          not := "NOT" not | predicate
//! predicate  := "(" condition ")" | function | operand comparator operand
//!             | operand "BETWEEN" operand "AND" operand | operand "IN" "(" operand ("," operand)* ")"
//! operand    := path | :value | "size" "(" path ")"
//! update     := ("SET" set ("," set)* | "REMOVE" path ("," path)* | ("ADD" | "DELETE") path :value ("," …)*)+
//! set        := path "=" term [("+" | "-") term]
//! term       := path | :value | "if_not_exists" "(" path "," term ")" | "list_append" "(" term "," term ")"
//! path       := name ("." name | "[" digits "]")*
//! ```

use std::sync::OnceLock;

use super::lexer::{Token, Tokens};
use super::{Comparator, Condition, Kind, Operand, Path, Placeholders, SetValue, Step, Update, check_size};
use crate::fake::dynamodb::error::Refusal;
use crate::fake::dynamodb::value::Value;

pub(super) fn reserved(word: &str) -> bool {
    static WORDS: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    WORDS
        .get_or_init(|| include_str!("reserved_words.txt").split_whitespace().map(str::to_owned).collect())
        .contains(&word.to_ascii_uppercase())
}

struct Parser<'a, 'p> {
    tokens: Tokens<'a>,
    placeholders: &'p mut Placeholders,
}

pub fn parse_condition(text: &str, kind: Kind, placeholders: &mut Placeholders) -> Result<Condition, Refusal> {
    check_size(text, kind)?;
    let mut parser = Parser { tokens: Tokens::new(text, kind)?, placeholders };
    let condition = parser.condition()?;
    parser.finish()?;
    Ok(condition)
}

pub fn parse_projection(text: &str, placeholders: &mut Placeholders) -> Result<Vec<Path>, Refusal> {
    check_size(text, Kind::Projection)?;
    let mut parser = Parser { tokens: Tokens::new(text, Kind::Projection)?, placeholders };
    let mut paths = vec![parser.path()?];
    while parser.tokens.symbol(",") {
        paths.push(parser.path()?);
    }
    parser.finish()?;
    no_overlap(paths.iter(), Kind::Projection)?;
    Ok(paths)
}

pub fn parse_update(text: &str, placeholders: &mut Placeholders) -> Result<Update, Refusal> {
    check_size(text, Kind::Update)?;
    let mut parser = Parser { tokens: Tokens::new(text, Kind::Update)?, placeholders };
    let mut update = Update::default();
    let mut seen: Vec<&str> = Vec::new();
    while !parser.tokens.at_end() {
        let clause = ["SET", "REMOVE", "ADD", "DELETE"].into_iter().find(|c| parser.tokens.keyword(c));
        let Some(clause) = clause else { return Err(parser.tokens.unexpected()) };
        if seen.contains(&clause) {
            return Err(Kind::Update
                .invalid(format!("The \"{clause}\" section can only be used once in an update expression;")));
        }
        seen.push(clause);
        loop {
            match clause {
                "SET" => update.set.push(parser.set_action()?),
                "REMOVE" => update.remove.push(parser.path()?),
                "ADD" => update.add.push((parser.path()?, parser.value()?)),
                _ => update.delete.push((parser.path()?, parser.value()?)),
            }
            if !parser.tokens.symbol(",") {
                break;
            }
        }
    }
    no_overlap(update.targets(), Kind::Update)?;
    Ok(update)
}

/// DynamoDB refuses two paths of one expression where one is, or is inside, the other.
fn no_overlap<'a>(paths: impl Iterator<Item = &'a Path>, kind: Kind) -> Result<(), Refusal> {
    let paths: Vec<&Path> = paths.collect();
    for (n, first) in paths.iter().enumerate() {
        if let Some(second) = paths[n + 1..].iter().find(|other| first.overlaps(other)) {
            return Err(kind.invalid(format!(
                "Two document paths overlap with each other; must remove or rewrite one of these paths; \
                 path one: {first}, path two: {second}"
            )));
        }
    }
    Ok(())
}

impl Parser<'_, '_> {
    fn kind(&self) -> Kind {
        self.tokens.kind()
    }

    fn finish(&self) -> Result<(), Refusal> {
        if self.tokens.at_end() { Ok(()) } else { Err(self.tokens.unexpected()) }
    }

    fn path(&mut self) -> Result<Path, Refusal> {
        let mut steps = vec![Step::Key(self.name()?)];
        loop {
            if self.tokens.symbol(".") {
                steps.push(Step::Key(self.name()?));
            } else if self.tokens.symbol("[") {
                let Some(Token::Index(index)) = self.tokens.take() else { return Err(self.tokens.unexpected()) };
                steps.push(Step::Index(index));
                self.tokens.expect("]")?;
            } else {
                return Ok(Path(steps));
            }
        }
    }

    fn name(&mut self) -> Result<String, Refusal> {
        match self.tokens.peek().cloned() {
            Some(Token::Name(placeholder)) => {
                self.tokens.take();
                self.placeholders.name(&placeholder, self.kind())
            }
            Some(Token::Word(word)) if reserved(&word) => {
                Err(self.kind().invalid(format!("Attribute name is a reserved keyword; reserved keyword: {word}")))
            }
            Some(Token::Word(word)) if !word.as_bytes()[0].is_ascii_digit() => {
                self.tokens.take();
                Ok(word)
            }
            _ => Err(self.tokens.unexpected()),
        }
    }

    fn value(&mut self) -> Result<Value, Refusal> {
        match self.tokens.peek().cloned() {
            Some(Token::Value(placeholder)) => {
                self.tokens.take();
                self.placeholders.value(&placeholder, self.kind())
            }
            _ => Err(self.tokens.unexpected()),
        }
    }

    fn function(&self) -> Option<String> {
        match (self.tokens.peek(), self.tokens.peek_second()) {
            (Some(Token::Word(word)), Some(Token::Symbol("("))) => Some(word.clone()),
            _ => None,
        }
    }

    fn condition(&mut self) -> Result<Condition, Refusal> {
        let mut condition = self.and()?;
        while self.tokens.keyword("OR") {
            condition = Condition::Or(Box::new(condition), Box::new(self.and()?));
        }
        Ok(condition)
    }

    fn and(&mut self) -> Result<Condition, Refusal> {
        let mut condition = self.not()?;
        while self.tokens.keyword("AND") {
            condition = Condition::And(Box::new(condition), Box::new(self.not()?));
        }
        Ok(condition)
    }

    fn not(&mut self) -> Result<Condition, Refusal> {
        if self.tokens.keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Condition, Refusal> {
        if self.tokens.symbol("(") {
            let inner = self.condition()?;
            self.tokens.expect(")")?;
            return Ok(inner);
        }
        if let Some(function) = self.function().filter(|f| f != "size") {
            return self.condition_function(&function);
        }
        let left = self.operand()?;
        if self.tokens.keyword("BETWEEN") {
            let low = self.operand()?;
            if !self.tokens.keyword("AND") {
                return Err(self.tokens.unexpected());
            }
            return Ok(Condition::Between(left, low, self.operand()?));
        }
        if self.tokens.keyword("IN") {
            self.tokens.expect("(")?;
            let mut options = vec![self.operand()?];
            while self.tokens.symbol(",") {
                options.push(self.operand()?);
            }
            self.tokens.expect(")")?;
            return Ok(Condition::In(left, options));
        }
        let comparator = match self.tokens.peek() {
            Some(Token::Symbol("=")) => Comparator::Eq,
            Some(Token::Symbol("<>")) => Comparator::Ne,
            Some(Token::Symbol("<")) => Comparator::Lt,
            Some(Token::Symbol("<=")) => Comparator::Le,
            Some(Token::Symbol(">")) => Comparator::Gt,
            Some(Token::Symbol(">=")) => Comparator::Ge,
            _ => return Err(self.tokens.unexpected()),
        };
        self.tokens.take();
        Ok(Condition::Compare(left, comparator, self.operand()?))
    }

    fn condition_function(&mut self, function: &str) -> Result<Condition, Refusal> {
        self.tokens.take();
        self.tokens.expect("(")?;
        let condition = match function {
            "attribute_exists" => Condition::Exists(self.path()?),
            "attribute_not_exists" => Condition::NotExists(self.path()?),
            "attribute_type" => {
                let path = self.path()?;
                self.tokens.expect(",")?;
                Condition::Type(path, self.operand()?)
            }
            "begins_with" | "contains" => {
                let subject = self.operand()?;
                self.tokens.expect(",")?;
                let argument = self.operand()?;
                if function == "contains" {
                    Condition::Contains(subject, argument)
                } else {
                    Condition::BeginsWith(subject, argument)
                }
            }
            other => return Err(self.kind().invalid(format!("Invalid function name; function: {other}"))),
        };
        self.tokens.expect(")")?;
        Ok(condition)
    }

    fn operand(&mut self) -> Result<Operand, Refusal> {
        match self.function().as_deref() {
            Some("size") => {
                self.tokens.take();
                self.tokens.expect("(")?;
                let path = self.path()?;
                self.tokens.expect(")")?;
                Ok(Operand::Size(path))
            }
            Some(other) => Err(self.kind().invalid(format!(
                "The function is not allowed to be used this way in an expression; function: {other}"
            ))),
            None if matches!(self.tokens.peek(), Some(Token::Value(_))) => Ok(Operand::Value(self.value()?)),
            None => Ok(Operand::Path(self.path()?)),
        }
    }

    fn set_action(&mut self) -> Result<(Path, SetValue), Refusal> {
        let path = self.path()?;
        self.tokens.expect("=")?;
        let first = self.term()?;
        let value = if self.tokens.symbol("+") {
            SetValue::Plus(Box::new(first), Box::new(self.term()?))
        } else if self.tokens.symbol("-") {
            SetValue::Minus(Box::new(first), Box::new(self.term()?))
        } else {
            first
        };
        Ok((path, value))
    }

    fn term(&mut self) -> Result<SetValue, Refusal> {
        match self.function().as_deref() {
            Some("if_not_exists") => {
                self.tokens.take();
                self.tokens.expect("(")?;
                let path = self.path()?;
                self.tokens.expect(",")?;
                let fallback = self.term()?;
                self.tokens.expect(")")?;
                Ok(SetValue::IfNotExists(path, Box::new(fallback)))
            }
            Some("list_append") => {
                self.tokens.take();
                self.tokens.expect("(")?;
                let first = self.term()?;
                self.tokens.expect(",")?;
                let second = self.term()?;
                self.tokens.expect(")")?;
                Ok(SetValue::ListAppend(Box::new(first), Box::new(second)))
            }
            Some(other) => Err(Kind::Update.invalid(format!("Invalid function name; function: {other}"))),
            None if matches!(self.tokens.peek(), Some(Token::Value(_))) => Ok(SetValue::Value(self.value()?)),
            None => Ok(SetValue::Path(self.path()?)),
        }
    }
}
