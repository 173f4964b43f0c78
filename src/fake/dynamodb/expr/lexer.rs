//! Splits an expression into tokens, remembering where each starts so that syntax errors can quote it as
//! DynamoDB does (`token: "x", near: "a x"`).

use super::Kind;
use crate::fake::dynamodb::error::Refusal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word: an attribute name, a keyword or a function name.
    Word(String),
    /// `#name`
    Name(String),
    /// `:value`
    Value(String),
    /// Digits: a list index.
    Index(usize),
    Symbol(&'static str),
}

const SYMBOLS: [&str; 13] = ["<>", "<=", ">=", "=", "<", ">", "(", ")", ",", ".", "[", "]", "+"];

#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    next: usize,
    kind: Kind,
}

fn word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

impl<'a> Tokens<'a> {
    pub fn new(text: &'a str, kind: Kind) -> Result<Self, Refusal> {
        let bytes = text.as_bytes();
        let mut tokens = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let start = at;
            let byte = bytes[at];
            if byte.is_ascii_whitespace() {
                at += 1;
                continue;
            }
            let token = if byte == b'#' || byte == b':' {
                at += 1;
                while at < bytes.len() && word_byte(bytes[at]) {
                    at += 1;
                }
                let name = text[start..at].to_owned();
                if at == start + 1 {
                    return Err(Self::syntax_error(kind, &name, text, start));
                }
                if byte == b'#' { Token::Name(name) } else { Token::Value(name) }
            } else if byte.is_ascii_digit() {
                while at < bytes.len() && bytes[at].is_ascii_digit() {
                    at += 1;
                }
                match text[start..at].parse() {
                    Ok(index) if at == bytes.len() || !word_byte(bytes[at]) => Token::Index(index),
                    _ => return Err(Self::syntax_error(kind, &text[start..at], text, start)),
                }
            } else if word_byte(byte) {
                while at < bytes.len() && word_byte(bytes[at]) {
                    at += 1;
                }
                Token::Word(text[start..at].to_owned())
            } else if byte == b'-' {
                at += 1;
                Token::Symbol("-")
            } else if let Some(symbol) = SYMBOLS.iter().find(|s| text[at..].starts_with(**s)) {
                at += symbol.len();
                Token::Symbol(symbol)
            } else {
                let end = text[at..].chars().next().map_or(at + 1, |c| at + c.len_utf8());
                return Err(Self::syntax_error(kind, &text[at..end], text, start));
            };
            tokens.push((token, start));
        }
        Ok(Self { text, tokens, next: 0, kind })
    }

    fn syntax_error(kind: Kind, token: &str, text: &str, at: usize) -> Refusal {
        let before = text[..at].trim_end().rsplit(char::is_whitespace).next().unwrap_or("");
        let near = format!("{before}{}{token}", if before.is_empty() { "" } else { " " });
        kind.invalid(format!("Syntax error; token: \"{token}\", near: \"{}\"", near.trim()))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(token, _)| token)
    }

    pub fn peek_second(&self) -> Option<&Token> {
        self.tokens.get(self.next + 1).map(|(token, _)| token)
    }

    pub fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(token, _)| token.clone());
        self.next += usize::from(token.is_some());
        token
    }

    pub fn at_end(&self) -> bool {
        self.next >= self.tokens.len()
    }

    /// Whether the next token is this keyword (in any case), taking it if so.
    pub fn keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword));
        self.next += usize::from(found);
        found
    }

    pub fn symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        self.next += usize::from(found);
        found
    }

    pub fn expect(&mut self, symbol: &str) -> Result<(), Refusal> {
        if self.symbol(symbol) { Ok(()) } else { Err(self.unexpected()) }
    }

    /// A syntax error at the next token (or at the end).
    pub fn unexpected(&self) -> Refusal {
        match self.tokens.get(self.next) {
            Some((_, at)) => {
                let end = self.tokens.get(self.next + 1).map_or(self.text.len(), |(_, next)| *next);
                Self::syntax_error(self.kind, self.text[*at..end].trim(), self.text, *at)
            }
            None => {
                let last = self.text.trim_end().rsplit(char::is_whitespace).next().unwrap_or("");
                self.kind.invalid(format!("Syntax error; token: \"<EOF>\", near: \"{last}\""))
            }
        }
    }
}
