//! Talking to a running guest: the QEMU machine and its QMP socket, SSH into it, and its
//! serial console, screen and keyboard.

pub mod console;
pub mod keys;
pub mod machine;
pub mod qmp;
pub mod screen;
pub mod ssh;
