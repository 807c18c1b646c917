//! The tree as code: `export`, `diff`, `apply`. The file's shapes and the export
//! (`doc`), the checks made before anything changes (`check`) and the ordered plan
//! (`plan`) are plain functions; `cmd` reads the server and carries the plan out.

pub mod check;
pub mod cmd;
pub mod doc;
pub mod plan;
pub mod widen;
