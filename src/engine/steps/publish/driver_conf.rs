//! A reader for Djinn's driver.conf: nginx-like `key [label] value` lines, where a value is a
//! quoted string, a bare word (number, size, duration, boolean), a `{ … }` block or a
//! `[ … ]` array; `#` starts a comment; `;` or a newline ends a line.

use std::fmt;
use std::path::PathBuf;

/// One `key [label] value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub label: Option<String>,
    pub value: ConfValue,
    pub line: usize,
}

/// The value of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfValue {
    String(String),
    /// Numbers, sizes (`2GB`), durations (`30m`), booleans and names, as written.
    Bare(String),
    Block(Vec<Entry>),
    Array(Vec<ConfValue>),
}

/// Where and why a driver.conf does not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    End,
}

fn tokens(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let special = |c: char| "{}[],;\"#".contains(c) || c.is_whitespace();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                out.push((Tok::End, line));
                line += 1;
            }
            ';' => out.push((Tok::End, line)),
            c if c.is_whitespace() => {}
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '{' => out.push((Tok::Open, line)),
            '}' => out.push((Tok::Close, line)),
            '[' => out.push((Tok::OpenList, line)),
            ']' => out.push((Tok::CloseList, line)),
            ',' => out.push((Tok::Comma, line)),
            '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('"') => value.push('"'),
                            Some('\\') => value.push('\\'),
                            Some(other) => {
                                value.push('\\');
                                value.push(other);
                            }
                            None => break,
                        },
                        Some('\n') | None => {
                            return Err(ParseError {
                                line,
                                message: "a quoted string is not closed on its line".into(),
                            });
                        }
                        Some(other) => value.push(other),
                    }
                }
                out.push((Tok::Str(value), line));
            }
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if special(next) {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                out.push((Tok::Word(word), line));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(1, |(_, l)| *l)
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        tok
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn skip_ends(&mut self) {
        while self.peek() == Some(&Tok::End) {
            self.at += 1;
        }
    }

    /// Lines until `}` (inside a block opened on line `opened`) or the end of the text.
    fn entries(&mut self, opened: Option<usize>) -> Result<Vec<Entry>, ParseError> {
        let mut entries = Vec::new();
        loop {
            self.skip_ends();
            match self.peek() {
                None => {
                    return match opened {
                        Some(line) => Err(ParseError {
                            line,
                            message: "this `{` block is not closed".into(),
                        }),
                        None => Ok(entries),
                    };
                }
                Some(Tok::Close) if opened.is_some() => {
                    self.at += 1;
                    return Ok(entries);
                }
                Some(Tok::Close) => return self.error("`}` without a block to close"),
                Some(Tok::Word(_)) => entries.push(self.entry()?),
                Some(other) => {
                    return self.error(format!("expected a name, found {}", describe(other)));
                }
            }
        }
    }

    fn entry(&mut self) -> Result<Entry, ParseError> {
        let line = self.line();
        let Some(Tok::Word(key)) = self.next() else {
            unreachable!("entry starts at a word")
        };
        let mut words = Vec::new();
        while let Some(Tok::Word(word)) = self.peek() {
            words.push(word.clone());
            self.at += 1;
        }
        let value = match self.peek() {
            Some(Tok::Open | Tok::OpenList | Tok::Str(_)) => Some(self.value()?),
            _ => None,
        };
        let (label, value) = match (value, words.len()) {
            (Some(value), 0) => (None, value),
            (Some(value), 1) => (words.pop(), value),
            (None, 1) => (None, ConfValue::Bare(words.remove(0))),
            (None, 2) => {
                let value = ConfValue::Bare(words.remove(1));
                (words.pop(), value)
            }
            (None, 0) => return self.error(format!("`{key}` has no value")),
            _ => return self.error(format!("`{key}` has too many words before its value")),
        };
        match self.peek() {
            None | Some(Tok::End | Tok::Close) => {}
            Some(other) => {
                return self.error(format!(
                    "unexpected {} after the value of `{key}`",
                    describe(other)
                ));
            }
        }
        Ok(Entry {
            key,
            label,
            value,
            line,
        })
    }

    fn value(&mut self) -> Result<ConfValue, ParseError> {
        let line = self.line();
        match self.next() {
            Some(Tok::Str(s)) => Ok(ConfValue::String(s)),
            Some(Tok::Word(w)) => Ok(ConfValue::Bare(w)),
            Some(Tok::Open) => Ok(ConfValue::Block(self.entries(Some(line))?)),
            Some(Tok::OpenList) => {
                let mut items = Vec::new();
                loop {
                    self.skip_ends();
                    if self.peek() == Some(&Tok::CloseList) {
                        self.at += 1;
                        return Ok(ConfValue::Array(items));
                    }
                    items.push(self.value()?);
                    self.skip_ends();
                    match self.next() {
                        Some(Tok::Comma) => {}
                        Some(Tok::CloseList) => return Ok(ConfValue::Array(items)),
                        _ => {
                            self.at -= 1;
                            return self.error("expected `,` or `]` in an array");
                        }
                    }
                }
            }
            Some(other) => {
                self.at -= 1;
                self.error(format!("expected a value, found {}", describe(&other)))
            }
            None => self.error("expected a value, found the end of the file"),
        }
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Open => "`{`".into(),
        Tok::Close => "`}`".into(),
        Tok::OpenList => "`[`".into(),
        Tok::CloseList => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::End => "the end of the line".into(),
    }
}

/// Parse a whole driver.conf.
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    parser.entries(None)
}

/// The `disks` directory of the `driver qemu { … }` block.
pub fn qemu_disks(entries: &[Entry]) -> Result<String, String> {
    let block = entries
        .iter()
        .find_map(|e| match &e.value {
            ConfValue::Block(body) if e.key == "driver" && e.label.as_deref() == Some("qemu") => {
                Some(body)
            }
            _ => None,
        })
        .ok_or("it has no `driver qemu { … }` block")?;
    match block.iter().find(|e| e.key == "disks").map(|e| &e.value) {
        Some(ConfValue::String(dir) | ConfValue::Bare(dir)) if !dir.is_empty() => Ok(dir.clone()),
        Some(_) => Err("`disks` in `driver qemu` must be a directory in quotes".into()),
        None => Err("`driver qemu { … }` has no `disks \"DIR\"` line".into()),
    }
}

/// Where the offline runner's driver configuration lives (`~/.config/djinn/driver.conf`).
pub fn default_driver_conf() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("djinn/driver.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIST_CONF: &str = r#"# The driver.cfg file details global configuration for drivers.

driver ssh {
	# Timeout is how long an SSH connection waits.
	timeout "60s"
	user "root"
}

driver docker {
	host "unix:///var/run/docker.sock"
	version "1.40"
}

driver qemu {
	# Disks denotes the location of the QCOW2 images.
	disks  "/var/lib/djinn/images"
	cpus 2
	memory 2048
}
"#;

    #[test]
    fn reads_disks_from_the_distributed_driver_conf() {
        let entries = parse(DIST_CONF).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].key, "driver");
        assert_eq!(entries[2].label.as_deref(), Some("qemu"));
        assert_eq!(entries[2].line, 14);
        let ConfValue::Block(qemu) = &entries[2].value else {
            panic!("{:?}", entries[2]);
        };
        assert_eq!(qemu[1].value, ConfValue::Bare("2".into()));
        assert_eq!(qemu_disks(&entries).unwrap(), "/var/lib/djinn/images");
    }

    #[test]
    fn parses_the_rest_of_the_language() {
        let text = r#"
pidfile "/run/djinn.pid"; parallelism 0
log info "/var/log/djinn/worker.log"
provider github
timeout 1h30m
limit 2GB
nested {
    deeper label { value "a \"quoted\" \\ word" }   # comment after a block
    list [ "a", 1,
           true, { x 1 } ]
    empty []
}
"#;
        let entries = parse(text).unwrap();
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pidfile",
                "parallelism",
                "log",
                "provider",
                "timeout",
                "limit",
                "nested"
            ]
        );
        assert_eq!(entries[2].label.as_deref(), Some("info"));
        assert_eq!(entries[3].value, ConfValue::Bare("github".into()));
        assert_eq!(entries[4].value, ConfValue::Bare("1h30m".into()));
        let ConfValue::Block(nested) = &entries[6].value else {
            panic!()
        };
        let ConfValue::Block(deeper) = &nested[0].value else {
            panic!()
        };
        assert_eq!(nested[0].label.as_deref(), Some("label"));
        assert_eq!(
            deeper[0].value,
            ConfValue::String(r#"a "quoted" \ word"#.into())
        );
        let ConfValue::Array(list) = &nested[1].value else {
            panic!()
        };
        assert_eq!(list.len(), 4);
        assert!(matches!(&list[3], ConfValue::Block(b) if b[0].key == "x"));
        assert_eq!(nested[2].value, ConfValue::Array(vec![]));
    }

    #[test]
    fn broken_files_say_where() {
        for (text, line, words) in [
            ("\ndriver qemu {\n disks \"/x\"\n", 2, "not closed"),
            ("driver qemu {\n disks \"/x\n}\n", 2, "not closed"),
            ("}\n", 1, "without a block"),
            ("a\n", 1, "has no value"),
            ("a b c d\n", 1, "too many words"),
            ("a [1 2]\n", 1, "`,` or `]`"),
            ("a \"x\" y\n", 1, "unexpected"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
        }
        let err = qemu_disks(&parse("driver ssh { user \"root\" }").unwrap()).unwrap_err();
        assert!(err.contains("driver qemu"), "{err}");
        let err = qemu_disks(&parse("driver qemu { cpus 1 }").unwrap()).unwrap_err();
        assert!(err.contains("disks"), "{err}");
    }
}
