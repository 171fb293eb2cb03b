//! `ssl.principal.mapping.rules`: how a client certificate's subject becomes a user name, with
//! Kafka's rule language (SslPrincipalMapper). Rules are tried in order; the first that
//! applies names the user:
//!
//! - `DEFAULT`: the subject as it is (`CN=alice,OU=eng,O=example`);
//! - `RULE:pattern/replacement/[L|U]`: if the regular expression matches the whole subject, the
//!   replacement with `$1`, `$2`, ... for its groups, lower- or upper-cased with `L` or `U`.
//!
//! A subject no rule applies to is refused (the TLS connection is closed).

use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<Case>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

/// The parsed rules of one listener.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses the rules, or says what is wrong with them.
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let mut out = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            let (rule, after) = if let Some(after) = rest.strip_prefix("DEFAULT") {
                (Some(Rule::Default), after)
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("a RULE is missing its replacement: {rest}"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("a RULE is missing its closing '/': {rest}"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Some(Case::Lower), &after[1..]),
                    Some('U') => (Some(Case::Upper), &after[1..]),
                    _ => (None, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("bad pattern {pattern}: {e}"))?;
                let rule = Rule::Replace {
                    pattern,
                    replacement: replacement.to_string(),
                    case,
                };
                // As Kafka, anything after the flag up to the next comma is ignored.
                let after = after.find(',').map_or("", |i| &after[i..]);
                (Some(rule), after)
            } else if rest.starts_with(',') {
                (None, rest)
            } else {
                return Err(format!("invalid rule: {rest}"));
            };
            out.extend(rule);
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(r) => r.trim_start(),
                None if after.is_empty() => after,
                None => return Err(format!("invalid rule, unmatched: {after}")),
            };
        }
        if out.is_empty() {
            out.push(Rule::Default);
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The user name of a certificate subject, from the first rule that applies.
    pub fn name(&self, subject: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(subject.to_string()),
            Rule::Replace {
                pattern,
                replacement,
                case,
            } => {
                let groups = pattern.captures(subject)?;
                let name = expand(replacement, &groups);
                Some(match case {
                    Some(Case::Lower) => name.to_lowercase(),
                    Some(Case::Upper) => name.to_uppercase(),
                    None => name,
                })
            }
        })
    }
}

/// Text up to the first '/' not escaped by a backslash, and what follows that '/'.
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((&s[..i], &s[i + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// Java's replacement syntax: `$n` is group n (the longest number that names a group), `\x`
/// is x; a `$` with no group after it stays as it is.
fn expand(replacement: &str, groups: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut chars = replacement.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '$' => {
                let digits: String = replacement[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let mut taken = digits.len();
                let mut group = None;
                while taken > 0 {
                    if let Ok(n) = digits[..taken].parse::<usize>() {
                        if n < groups.len() {
                            group = Some(n);
                            break;
                        }
                    }
                    taken -= 1;
                }
                match group {
                    Some(n) => {
                        out.push_str(groups.get(n).map_or("", |m| m.as_str()));
                        for _ in 0..taken {
                            chars.next();
                        }
                    }
                    None => out.push('$'),
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_documented_rules() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.name("CN=kafka-server1,OU=ServiceUsers,O=org,C=US")
                .unwrap(),
            "kafka-server1"
        );
        assert_eq!(
            m.name("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US")
                .unwrap(),
            "duke@javasoft"
        );
        assert_eq!(m.name("OU=x,cn=duke.x,O=y").unwrap(), "DUKE.X");
        assert_eq!(m.name("O=nobody").unwrap(), "O=nobody", "DEFAULT last");
    }

    #[test]
    fn no_rule_applies_and_bad_rules() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/").unwrap();
        assert_eq!(m.name("CN=alice").unwrap(), "alice");
        assert_eq!(m.name("O=alice"), None);
        assert_eq!(
            PrincipalMapper::parse("").unwrap().name("CN=a").unwrap(),
            "CN=a"
        );
        for bad in [
            "RULE:^CN=(.*)$",
            "RULE:^CN=(.*)$/$1",
            "DEFAULTX",
            "NONSENSE",
            "RULE:(/x/",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        // Escaped slashes and a literal '$' with no group after it.
        let m = PrincipalMapper::parse(r"RULE:^CN=([a-z]+)\/x$/u\/$1$9/").unwrap();
        assert_eq!(m.name("CN=bob/x").unwrap(), "u/bob$9");
        // $12 with one group: group 1, then a literal 2.
        let m = PrincipalMapper::parse("RULE:^CN=(.*)$/$12/").unwrap();
        assert_eq!(m.name("CN=bob").unwrap(), "bob2");
    }
}
