//! `--var KEY=VALUE`: one key set in the parsed tree before anything is read from it, so that
//! the value is checked like one written in the file.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Set `key` (dotted; array entries by index) to `value` in the tree, creating tables on the
/// way; the key and value get `span`.
pub(super) fn set_var<'i>(
    root: &mut DeTable<'i>,
    key: &'i str,
    value: &'i str,
    span: Range<usize>,
) -> Result<(), String> {
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|segment| segment.is_empty()) {
        return Err("write the key as names joined by dots, e.g. disk.size".into());
    }
    let value = Spanned::new(span.clone(), typed_value(value));
    set_in_table(root, &path, value, span)
}

/// A TOML boolean or integer when the text reads as one; otherwise the text as a string.
fn typed_value(text: &str) -> DeValue<'_> {
    match DeValue::parse(text) {
        Ok(value) if matches!(value.get_ref(), DeValue::Boolean(_) | DeValue::Integer(_)) => {
            value.into_inner()
        }
        _ => DeValue::String(Cow::Borrowed(text)),
    }
}

fn set_in_table<'i>(
    table: &mut DeTable<'i>,
    path: &[&'i str],
    value: Spanned<DeValue<'i>>,
    span: Range<usize>,
) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a key has at least one name");
    let key = Spanned::new(span.clone(), Cow::Borrowed(*first));
    if rest.is_empty() {
        // An existing key keeps its own span: only the value is the --var's.
        table.insert(key, value);
        return Ok(());
    }
    let new_table = Spanned::new(span.clone(), DeValue::Table(DeTable::new()));
    let child = table.entry(key).or_insert(new_table);
    set_in_value(child.get_mut(), first, rest, value, span)
}

fn set_in_value<'i>(
    node: &mut DeValue<'i>,
    name: &str,
    path: &[&'i str],
    value: Spanned<DeValue<'i>>,
    span: Range<usize>,
) -> Result<(), String> {
    match node {
        DeValue::Table(table) => set_in_table(table, path, value, span),
        DeValue::Array(items) => {
            let (first, rest) = path.split_first().expect("a key has at least one name");
            let count = items.len();
            let item = (first.parse::<usize>().ok())
                .and_then(|index| items.get_mut(index))
                .ok_or_else(|| {
                    format!("`{name}` has {count} entries, numbered from 0: no entry `{first}`")
                })?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_in_value(item.get_mut(), first, rest, value, span)
            }
        }
        _ => Err(format!("`{name}` is a value, not a table")),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::driver::Profile;
    use crate::engine::recipe::test_fixture::{Fixture, MINIMAL, assert_has, install};

    #[test]
    fn vars_override_nested_keys_array_entries_and_are_typed() {
        let fixture = Fixture::new();
        let text = format!(
            "{MINIMAL}[[publish]]\nto = \"djinn\"\nnamespace = \"images\"\n\
             [[publish]]\nto = \"offline\"\nnamespace = \"images\"\n"
        );
        let recipe = fixture
            .load(
                &text,
                &[
                    ("name", "other"),
                    ("disk.size", "20G"),
                    ("install.iso", "debian-12-netinst.iso"),
                    ("install.http_port", "8100"),
                    ("install.kernel_boot", "true"),
                    ("cleanup.zero_free_space", "true"),
                    ("publish.1.namespace", "team"),
                ],
            )
            .unwrap();
        assert_eq!(recipe.name, "other");
        assert_eq!(recipe.disk.size, Some("20G".parse().unwrap()));
        let install = install(&recipe);
        assert_eq!(install.iso, Some(fixture.path("debian-12-netinst.iso")));
        assert_eq!(install.http_port, Some(8100));
        assert!(install.kernel_boot);
        assert!(
            (recipe.cleanup)
                .contains(crate::engine::steps::configure::CleanupOperation::ZeroFreeSpace)
        );
        assert_eq!(
            recipe.publish[0].namespace.as_ref().map(|ns| ns.as_str()),
            Some("images")
        );
        assert_eq!(
            recipe.publish[1].namespace.as_ref().map(|ns| ns.as_str()),
            Some("team")
        );
        let text = format!("{MINIMAL}[verify]\nprofiles = [\"djinn\"]\n");
        let recipe = fixture
            .load(&text, &[("verify.profiles.0", "srht")])
            .unwrap();
        assert_eq!(recipe.verify.profiles, vec![Profile::Srht]);
    }

    #[test]
    fn a_var_that_does_not_fit_is_an_error_naming_it() {
        let fixture = Fixture::new();
        let error = fixture.error_with(MINIMAL, &[("disk.sise", "20G")]);
        assert_has(
            &error,
            &[
                "recipe.toml, --var disk.sise: unknown field `sise`",
                "did you mean `size`?",
            ],
        );
        let error = fixture.error_with(MINIMAL, &[("colour", "red")]);
        assert_has(&error, &["--var colour: unknown field `colour`"]);
        let error = fixture.error_with(MINIMAL, &[("publish.0.namespace", "x")]);
        assert_has(&error, &["--var publish.0.namespace: "]);
        let text = format!("{MINIMAL}[[provision]]\nshell = \"scripts/setup.sh\"\n");
        let error = fixture.error_with(&text, &[("provision.3.shell", "x")]);
        assert_has(
            &error,
            &["--var provision.3.shell: `provision` has 1 entries, numbered from 0: no entry `3`"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.iso.path", "x")]);
        assert_has(
            &error,
            &["--var install.iso.path: `iso` is a value, not a table"],
        );
        let error = fixture.error_with(MINIMAL, &[("install..iso", "x")]);
        assert_has(
            &error,
            &["--var install..iso: write the key as names joined by dots"],
        );
        // The value it set is what is wrong: the --var is named, not a line of the file.
        let error = fixture.error_with(MINIMAL, &[("disk.size", "lots")]);
        assert_has(
            &error,
            &["--var disk.size: [disk] size: `lots` does not start with a number"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.iso", "nothere.iso")]);
        assert_has(
            &error,
            &["--var install.iso: [install] iso: nothere.iso does not exist"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.http_port", "http")]);
        assert_has(
            &error,
            &["--var install.http_port: invalid type: string \"…\""],
        );
    }
}
