//! Reports for people and programs: text tables for terminals, JSON for tools.

pub mod jobs;
pub mod outcome;
pub mod preflight;
pub mod rules;
pub mod run;
pub mod status;
pub mod svg;
pub mod table;
pub mod text;
