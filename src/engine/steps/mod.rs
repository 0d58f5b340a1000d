//! What each step does to an image, one module per step: create ([`image`]), [`install`],
//! [`configure`] (through a NoCloud seed for a [`cloud_image`]), [`verify`] and [`publish`], plus a recipe's [`provision`] scripts and its
//! [`post_build`] command.

pub mod cloud_image;
pub mod configure;
pub mod image;
pub mod install;
pub mod post_build;
pub mod provision;
pub mod publish;
pub mod verify;
