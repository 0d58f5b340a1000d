//! For tests: a terminal output that records every byte written to it, readable from outside.

use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<u8>>>);

impl Recorder {
    /// How many bytes have been written so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// What was written from byte `start` on.
    pub fn since(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[start..]).into_owned()
    }
}

impl std::io::Write for Recorder {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
