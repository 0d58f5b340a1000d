//! Filling in a boot command's placeholders: the values they stand for, typed as keys.

use std::collections::BTreeMap;
use std::fmt;

use super::{
    Action, BootCommand, BootCommandError, Problem, SECRET_MASK, Shown, Token, unknown_name,
};
use crate::engine::guest::keys::key_for_char;

/// The values placeholders stand for: names the caller provides (some secret) and where
/// `{{ env "VAR" }}` reads from.
#[derive(Clone, Default)]
pub struct Values {
    named: BTreeMap<String, Value>,
    /// None: the process environment. Some: these variables only (tests, a replayed run).
    environment: Option<BTreeMap<String, String>>,
}

#[derive(Clone)]
struct Value {
    text: String,
    secret: bool,
}

impl Values {
    /// No names; `{{ env "VAR" }}` reads the process environment.
    pub fn new() -> Values {
        Values::default()
    }

    /// `{{ .name }}` types `text`, and the log shows it.
    pub fn with(self, name: &str, text: impl Into<String>) -> Values {
        self.with_value(name, text.into(), false)
    }

    /// `{{ .name }}` types `text`, and the log shows `•••` instead.
    pub fn with_secret(self, name: &str, text: impl Into<String>) -> Values {
        self.with_value(name, text.into(), true)
    }

    /// `{{ env "VAR" }}` reads these variables instead of the process environment.
    pub fn with_environment<K, V>(mut self, variables: impl IntoIterator<Item = (K, V)>) -> Values
    where
        K: Into<String>,
        V: Into<String>,
    {
        let variables = variables
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()));
        self.environment = Some(variables.collect());
        self
    }

    /// The names `{{ .Name }}` can use, for [`BootCommand::check_names`].
    pub fn names(&self) -> Vec<&str> {
        self.named.keys().map(String::as_str).collect()
    }

    fn with_value(mut self, name: &str, text: String, secret: bool) -> Values {
        self.named.insert(name.to_string(), Value { text, secret });
        self
    }

    fn env(&self, variable: &str) -> Result<String, Problem> {
        match &self.environment {
            Some(variables) => variables
                .get(variable)
                .cloned()
                .ok_or_else(|| Problem::EnvNotSet(variable.to_string())),
            None => match std::env::var(variable) {
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => {
                    Err(Problem::EnvNotSet(variable.to_string()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(Problem::EnvNotUnicode(variable.to_string()))
                }
            },
        }
    }
}

impl fmt::Debug for Values {
    /// Shows what is not secret; secrets and environment values only by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: BTreeMap<&str, &str> = self
            .named
            .iter()
            .map(|(name, value)| {
                let shown = if value.secret {
                    SECRET_MASK
                } else {
                    &value.text
                };
                (name.as_str(), shown)
            })
            .collect();
        let environment: Option<Vec<&String>> =
            self.environment.as_ref().map(|vars| vars.keys().collect());
        f.debug_struct("Values")
            .field("named", &named)
            .field("environment", &environment)
            .finish()
    }
}

impl BootCommand {
    /// Everything to do, in order, with the placeholders filled in from `values`.
    pub fn actions(&self, values: &Values) -> Result<Vec<Action>, BootCommandError> {
        let mut actions = Vec::new();
        for token in &self.tokens {
            match token {
                Token::Fixed(action) => actions.push(action.clone()),
                Token::Name { name, at } => {
                    let value = values
                        .named
                        .get(name)
                        .ok_or_else(|| unknown_name(name, *at, &values.names()))?;
                    let placeholder = format!("{{{{ .{name} }}}}");
                    type_value(&mut actions, &value.text, value.secret, &placeholder)
                        .map_err(|problem| BootCommandError { at: *at, problem })?;
                }
                Token::Env { variable, at } => {
                    let placeholder = format!("{{{{ env \"{variable}\" }}}}");
                    values
                        .env(variable)
                        .and_then(|text| type_value(&mut actions, &text, true, &placeholder))
                        .map_err(|problem| BootCommandError { at: *at, problem })?;
                }
            }
        }
        Ok(actions)
    }
}

/// Append the key presses that type `text`; secret text is shown masked, in errors too.
fn type_value(
    actions: &mut Vec<Action>,
    text: &str,
    secret: bool,
    placeholder: &str,
) -> Result<(), Problem> {
    for (index, c) in text.chars().enumerate() {
        // An environment variable read from a file often ends in a newline nobody meant to type.
        if c == '\n' || c == '\r' {
            return Err(Problem::ValueLineBreak(placeholder.to_string()));
        }
        let keys = key_for_char(c).ok_or_else(|| Problem::ValueNoKey {
            placeholder: placeholder.to_string(),
            index: index + 1,
            char: (!secret).then_some(c),
        })?;
        let shown = if secret {
            Shown::Secret
        } else {
            Shown::Char(c)
        };
        actions.push(Action::Press { keys, shown });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, log, parse, typed};
    use super::super::{HTTP_IP, HTTP_PORT};
    use super::*;

    #[test]
    fn placeholders_take_the_values_given() {
        let values = Values::new()
            .with(HTTP_IP, "10.0.2.2")
            .with(HTTP_PORT, "8123");
        for source in [
            "{{ .HTTPIP }}:{{ .HTTPPort }}",
            "{{.HTTPIP}}:{{.HTTPPort}}",
            "{{   .HTTPIP\t}}:{{.HTTPPort   }}",
            "{{ .HTTPIP\n}}:{{\n.HTTPPort }}",
        ] {
            let actions = parse(source).actions(&values).unwrap();
            assert_eq!(actions, typed("10.0.2.2:8123"), "{source:?}");
        }
    }

    #[test]
    fn unknown_names_are_errors_at_the_placeholder() {
        let command = parse("url=http://{{ .HTTPIP }}:{{ .HttpPort }}/");
        assert_eq!(command.check_names(&[HTTP_IP, "HttpPort", "Name"]), Ok(()));
        let error = command.check_names(&[HTTP_IP, HTTP_PORT]).unwrap_err();
        assert_eq!(error.at, at(1, 26));
        assert_eq!(
            error.problem,
            Problem::UnknownName {
                name: "HttpPort".to_string(),
                suggestion: Some(HTTP_PORT.to_string()),
                known: vec![HTTP_IP.to_string(), HTTP_PORT.to_string()],
            }
        );
        assert_eq!(
            error.to_string(),
            "boot command, line 1, column 26: {{ .HttpPort }} is not a value kiln provides \
             here; did you mean {{ .HTTPPort }}?"
        );
        let values = Values::new().with(HTTP_IP, "10.0.2.2");
        let error = command.actions(&values).unwrap_err();
        assert_eq!(error.at, at(1, 26));
        assert!(matches!(error.problem, Problem::UnknownName { .. }));
        let error = parse("{{ .Disk }}").check_names(&[]).unwrap_err();
        assert!(error.to_string().ends_with("none are"), "{error}");
    }

    #[test]
    fn env_values_are_typed_and_always_secret() {
        let values = Values::new().with_environment([("KILN_TEST_ROOT_PW", "Hunter2!")]);
        let command = parse("pw={{ env \"KILN_TEST_ROOT_PW\" }}<enter>");
        let actions = command.actions(&values).unwrap();
        let keys: Vec<Vec<&str>> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Press {
                    keys,
                    shown: Shown::Secret,
                } => Some(keys.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<Vec<&str>> = "Hunter2!"
            .chars()
            .map(|c| key_for_char(c).unwrap())
            .collect();
        assert_eq!(keys, expected);
        assert_eq!(actions.len(), 3 + 8 + 1);
        assert_eq!(log(&actions), ["typed `pw=•••`", "pressed <enter>"]);
        let shown = format!("{actions:?} {values:?}");
        assert!(!shown.contains("Hunter2"), "{shown}");
        assert!(!shown.contains("\"h\""), "a secret's keys in {shown}");

        let error = command.actions(&Values::new().with_environment([("OTHER", "x")]));
        assert_eq!(
            error.unwrap_err(),
            BootCommandError {
                at: at(1, 4),
                problem: Problem::EnvNotSet("KILN_TEST_ROOT_PW".to_string()),
            }
        );
    }

    /// Only the process environment is read without `with_environment`. Setting a variable in
    /// this process is unsafe (other test threads read the environment), so this test runs
    /// itself again as a child process with the variable set.
    #[test]
    fn env_values_come_from_the_process_environment() {
        const VARIABLE: &str = "KILN_BOOT_COMMAND_TEST_ENV_7F3A";
        const VALUE: &str = "s3cret Pw";
        if std::env::var_os(VARIABLE).is_some() {
            let command = parse(&format!("{{{{ env \"{VARIABLE}\" }}}}"));
            let actions = command.actions(&Values::new()).unwrap();
            let secret: Vec<Action> = typed(VALUE)
                .into_iter()
                .map(|action| match action {
                    Action::Press { keys, .. } => Action::Press {
                        keys,
                        shown: Shown::Secret,
                    },
                    other => other,
                })
                .collect();
            assert_eq!(actions, secret);
            return;
        }
        let module = module_path!().split_once("::").map_or("", |(_, path)| path);
        let test = format!("{module}::env_values_come_from_the_process_environment");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test.as_str(), "--exact", "--test-threads=1"])
            .env(VARIABLE, VALUE)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test: {stdout}"
        );
    }

    #[test]
    fn secret_values_are_masked_in_the_log_and_errors() {
        let values = Values::new()
            .with_secret("Password", "tiny")
            .with_secret("Other", "x")
            .with("User", "root");
        let actions = parse("{{ .User }}:{{ .Password }}{{ .Other }} {{.Password}}")
            .actions(&values)
            .unwrap();
        assert_eq!(log(&actions), ["typed `root:••• •••`"]);
        assert!(!format!("{values:?}").contains("tiny"));

        let values = Values::new().with_secret("Password", "pässword");
        let error = parse("{{ .Password }}").actions(&values).unwrap_err();
        assert_eq!(
            error.problem,
            Problem::ValueNoKey {
                placeholder: "{{ .Password }}".to_string(),
                index: 2,
                char: None,
            }
        );
        assert!(!error.to_string().contains('ä'), "{error}");
        let values = Values::new().with("Name", "hé");
        let error = parse("{{ .Name }}").actions(&values).unwrap_err();
        assert!(error.to_string().contains("character 2 ('é')"), "{error}");
    }

    #[test]
    fn a_line_break_in_a_value_is_an_error() {
        let values = Values::new().with_environment([("PW", "secret\n")]);
        let error = parse("x {{ env \"PW\" }}").actions(&values).unwrap_err();
        assert_eq!(error.at, at(1, 3));
        assert_eq!(
            error.problem,
            Problem::ValueLineBreak("{{ env \"PW\" }}".to_string())
        );
    }
}
