//! DynamoDB's Number: up to 38 significant digits, magnitudes from 1E-130 to below 1E126, compared by value
//! (`1` and `1.0` are one number, so a number set holding both has a duplicate), stored and answered in plain
//! decimal, and sized in base-100 digit pairs aligned on the decimal point.
//!
//! Hand-written rather than a big-decimal crate: the size rule needs the digit layout anyway, and 38 digits fit an
//! `i128` mantissa.

use std::cmp::Ordering;
use std::fmt;

use super::error::Refusal;

const MAX_DIGITS: u32 = 38;
/// The largest power of ten a number's leading digit may have (magnitudes below 1E126).
const MAX_POWER: i32 = 125;
/// The smallest power of ten a number's last digit may have (magnitudes from 1E-130).
const MIN_POWER: i32 = -130;

/// `mantissa × 10^exponent`, the mantissa without trailing zeros (zero is `0 × 10^0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number {
    mantissa: i128,
    exponent: i32,
}

fn digits(value: i128) -> u32 {
    value.unsigned_abs().checked_ilog10().map_or(1, |log| log + 1)
}

impl Number {
    pub const ZERO: Self = Self { mantissa: 0, exponent: 0 };

    pub fn from_u64(value: u64) -> Self {
        Self::normalised(i128::from(value), 0).expect("a u64 is a valid number")
    }

    /// Reads a number as DynamoDB accepts it: optional sign, digits with an optional point, optional exponent.
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let invalid = || Refusal::validation("A value provided cannot be converted into a number");
        let (unsigned, negative) = match text.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (text.strip_prefix('+').unwrap_or(text), false),
        };
        let (decimal, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().map_err(|_| invalid())?),
            None => (unsigned, 0),
        };
        let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.len() + fraction.len() == 0 || !all_digits(whole) || !all_digits(fraction) {
            return Err(invalid());
        }
        let significant = format!("{whole}{fraction}");
        let significant = significant.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() {
            return Ok(Self::ZERO);
        }
        if trimmed.len() > MAX_DIGITS as usize {
            return Err(Refusal::validation("Attempting to store more than 38 significant digits in a Number"));
        }
        let mantissa: i128 = trimmed.parse().map_err(|_| invalid())?;
        let dropped = i32::try_from(significant.len() - trimmed.len()).map_err(|_| invalid())?;
        let point = i32::try_from(fraction.len()).map_err(|_| invalid())?;
        let exponent = exponent.checked_add(dropped).and_then(|e| e.checked_sub(point)).ok_or_else(invalid)?;
        Self::normalised(if negative { -mantissa } else { mantissa }, exponent)
    }

    /// Strips trailing zeros and checks DynamoDB's precision and range.
    fn normalised(mut mantissa: i128, mut exponent: i32) -> Result<Self, Refusal> {
        if mantissa == 0 {
            return Ok(Self::ZERO);
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        if digits(mantissa) > MAX_DIGITS {
            return Err(Refusal::validation("Attempting to store more than 38 significant digits in a Number"));
        }
        let leading_power = exponent + digits(mantissa) as i32 - 1;
        if leading_power > MAX_POWER {
            return Err(Refusal::validation(
                "Number overflow. Attempting to store a number with magnitude larger than supported range",
            ));
        }
        if exponent < MIN_POWER {
            return Err(Refusal::validation(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range",
            ));
        }
        Ok(Self { mantissa, exponent })
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// The bytes DynamoDB counts: one, plus one per base-100 digit pair the value spans, plus one if negative.
    pub fn size(&self) -> usize {
        if self.mantissa == 0 {
            return 1;
        }
        let highest = self.exponent + digits(self.mantissa) as i32 - 1;
        let pairs = highest.div_euclid(2) - self.exponent.div_euclid(2) + 1;
        1 + pairs as usize + usize::from(self.is_negative())
    }

    pub fn add(&self, other: &Self) -> Result<Self, Refusal> {
        let exponent = self.exponent.min(other.exponent);
        let scaled = |n: &Self| {
            10i128.checked_pow((n.exponent - exponent) as u32).and_then(|scale| n.mantissa.checked_mul(scale))
        };
        let overflow = || {
            Refusal::validation(
                "Number overflow. Attempting to store a number with magnitude larger than supported range",
            )
        };
        let sum = scaled(self).zip(scaled(other)).and_then(|(a, b)| a.checked_add(b)).ok_or_else(overflow)?;
        Self::normalised(sum, exponent)
    }

    pub fn negated(&self) -> Self {
        Self { mantissa: -self.mantissa, exponent: self.exponent }
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |n: &Self| n.mantissa.signum();
        if sign(self) != sign(other) || self.mantissa == 0 {
            return sign(self).cmp(&sign(other));
        }
        let leading = |n: &Self| n.exponent + digits(n.mantissa) as i32;
        let magnitude = match leading(self).cmp(&leading(other)) {
            // Same leading power and at most 38 digits each: aligning them cannot overflow.
            Ordering::Equal => {
                let exponent = self.exponent.min(other.exponent);
                let aligned = |n: &Self| n.mantissa.unsigned_abs() * 10u128.pow((n.exponent - exponent) as u32);
                aligned(self).cmp(&aligned(other))
            }
            unequal => unequal,
        };
        if self.is_negative() { magnitude.reverse() } else { magnitude }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Plain decimal, as DynamoDB answers: `1E3` reads back as `1000`, `0042.10` as `42.1`.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        let digits = self.mantissa.unsigned_abs().to_string();
        if self.exponent >= 0 {
            return write!(f, "{sign}{digits}{}", "0".repeat(self.exponent as usize));
        }
        let point = self.exponent.unsigned_abs() as usize;
        if digits.len() > point {
            let (whole, fraction) = digits.split_at(digits.len() - point);
            write!(f, "{sign}{whole}.{fraction}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(point - digits.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(text: &str) -> Number {
        Number::parse(text).unwrap()
    }

    #[test]
    fn sizes_in_digit_pairs_aligned_on_the_point() {
        // Figures measured against DynamoDB (the item-size gate, to the byte).
        assert_eq!(n("3.14159").size(), 5);
        assert_eq!(n("123456").size(), 4);
        assert_eq!(n("1E125").size(), 2);
        assert_eq!(n("1").size(), 2);
        assert_eq!(n("-1").size(), 3);
    }

    #[test]
    fn reads_back_in_plain_decimal() {
        assert_eq!(n("0042.1200").to_string(), "42.12");
        assert_eq!(n("1E3").to_string(), "1000");
        assert_eq!(n("-0.0015").to_string(), "-0.0015");
        assert_eq!(n("0.0").to_string(), "0");
    }

    #[test]
    fn refuses_what_dynamodb_refuses() {
        for bad in ["", "abc", "1.2.3", "--1", "1e", "."] {
            assert!(Number::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Number::parse(&"1".repeat(39)).is_err(), "39 significant digits");
        assert!(Number::parse("1E126").is_err(), "too large");
        assert!(Number::parse("1E-131").is_err(), "too small");
    }

    #[test]
    fn equal_values_are_one_number() {
        assert_eq!(n("1"), n("1.0"));
        assert_eq!(n("10"), n("1E1"));
        assert!(n("-2") < n("1") && n("0.5") < n("1") && n("1E10") > n("99"));
    }

    proptest! {
        #[test]
        fn agrees_with_integer_arithmetic(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000i64..1_000_000) {
            let (x, y) = (n(&a.to_string()), n(&b.to_string()));
            prop_assert_eq!(x.add(&y).unwrap().to_string(), (a + b).to_string());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(n(&x.to_string()), x);
        }

        #[test]
        fn scaled_forms_are_the_same_number(mantissa in 1i64..1_000_000_000, shift in -20i32..20) {
            let plain = n(&format!("{mantissa}E{shift}"));
            prop_assert_eq!(n(&plain.to_string()), plain);
            // The documented approximation: one byte per two significant digits, plus one, give or take the
            // pair a point splits.
            let significant = mantissa.to_string().trim_end_matches('0').len();
            prop_assert!(plain.size().abs_diff(1 + significant.div_ceil(2)) <= 1);
        }
    }
}
