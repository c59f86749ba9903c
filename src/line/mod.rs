//! E1 line layer: G.711 companding and the line drivers (DESIGN.md §5).

pub mod driver;
pub mod g711;
