//! Grouping actions into the lines of a step log.

use std::time::Duration;

use super::durations::human_duration;
use super::{Action, SECRET_MASK, Shown};

/// Consecutive actions that make one line of a step log, e.g. "typed `install auto=true`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub actions: &'a [Action],
    /// What was done, in the past tense; secrets masked.
    pub shown: String,
}

/// Group actions into log lines: a run of typed text, a run of named keys, and each hold,
/// release and wait on its own. Perform a chunk's actions, then log its `shown`.
pub fn chunks(actions: &[Action]) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut rest = actions;
    while let Some(first) = rest.first() {
        let kind = ChunkKind::of(first);
        let length = if kind.groups() {
            rest.iter()
                .take_while(|action| ChunkKind::of(action) == kind)
                .count()
        } else {
            1
        };
        let (taken, left) = rest.split_at(length);
        chunks.push(Chunk {
            actions: taken,
            shown: describe(kind, taken),
        });
        rest = left;
    }
    chunks
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkKind {
    /// Presses that type characters (secret or not).
    Text,
    /// Presses of named keys.
    Keys,
    Hold(Shown),
    Release(Shown),
    Wait(Duration),
}

impl ChunkKind {
    fn of(action: &Action) -> ChunkKind {
        match action {
            Action::Press {
                shown: Shown::Char(_) | Shown::Secret,
                ..
            } => ChunkKind::Text,
            Action::Press {
                shown: Shown::Key(_),
                ..
            } => ChunkKind::Keys,
            Action::Hold { shown, .. } => ChunkKind::Hold(*shown),
            Action::Release { shown, .. } => ChunkKind::Release(*shown),
            Action::Wait(duration) => ChunkKind::Wait(*duration),
        }
    }

    /// Text and key presses read well as one line; holds and waits are worth a line each.
    fn groups(self) -> bool {
        matches!(self, ChunkKind::Text | ChunkKind::Keys)
    }
}

fn describe(kind: ChunkKind, actions: &[Action]) -> String {
    match kind {
        ChunkKind::Text => format!("typed `{}`", masked_text(actions)),
        ChunkKind::Keys => format!("pressed {}", masked_text(actions)),
        ChunkKind::Hold(shown) => format!("holding {shown} down"),
        ChunkKind::Release(shown) => format!("released {shown}"),
        ChunkKind::Wait(duration) => format!("waited {}", human_duration(duration)),
    }
}

/// What presses show, each run of secret characters as one `•••` so its length stays hidden.
fn masked_text(actions: &[Action]) -> String {
    let mut text = String::new();
    let mut in_secret = false;
    for action in actions {
        let Action::Press { shown, .. } = action else {
            continue;
        };
        match shown {
            Shown::Secret if in_secret => {}
            Shown::Secret => text.push_str(SECRET_MASK),
            shown => text.push_str(&shown.to_string()),
        }
        in_secret = *shown == Shown::Secret;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fixed_actions, log};

    #[test]
    fn named_keys_in_a_row_make_one_log_line() {
        let actions = fixed_actions("<esc><esc><enter><wait500ms>e<down><wait1m30s>");
        assert_eq!(
            log(&actions),
            [
                "pressed <esc><esc><enter>",
                "waited 500 ms",
                "typed `e`",
                "pressed <down>",
                "waited 1 min 30 s",
            ]
        );
    }
}
