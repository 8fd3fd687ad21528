//! Executable scenarios, as library code returning data (the CLI prints them).

pub mod demo;
