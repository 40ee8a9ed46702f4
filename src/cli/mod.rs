//! Subcommand entry points: argument handling and output only; the work is in the library.
pub mod audit;
pub mod certs;
pub mod check;
pub mod check_output;
pub mod echo;
pub mod edge;
pub mod memory_trim;
pub mod migrate;
pub mod routes;
pub mod rules;
pub mod serve;
pub mod status;
pub mod stdout;
pub mod workers;
