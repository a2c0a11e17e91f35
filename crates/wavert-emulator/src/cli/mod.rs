//! The command line in three steps: [`args`] parses it, [`run`] runs the
//! session it asks for, [`report`] turns what the session saw into the
//! report and the verdict.

pub mod args;
pub mod report;
pub mod run;
