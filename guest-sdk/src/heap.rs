//! The allocator of a plugin built for `wasm32-unknown-unknown`: a component that
//! imports no WASI at all, which the server instantiates in about half the time a
//! `wasm32-wasip2` build of the same plugin takes (Rust's standard library on wasip2
//! imports a dozen `wasi:cli` and `wasi:io` interfaces, and every import is wired up
//! anew for each call's fresh instance). Only plugins that need nothing of WASI can be
//! built so; [`crate::http`] and [`crate::random`] import `wasi:http` and `wasi:random`
//! themselves and work on either target.
//!
//! On that target the standard library allocates with a dlmalloc that takes memory only
//! from `memory.grow`. It never uses the free part of the initial memory, past the stack
//! and the data (from `__heap_base` to `__heap_end`), so every call, on its fresh
//! instance, would grow the memory at least once, and the server would then shrink it
//! back: two system calls and a page-table update per call. The `dlmalloc` crate from
//! 0.2.14 on hands that free part out first, as wasi-libc's malloc does on wasip2 (where
//! this module is not built); `plugins/.cargo/config.toml` sizes the initial memory.
//!
//! A plugin with an allocator of its own turns this one off with `default-features =
//! false` (feature `allocator`).

#[global_allocator]
static HEAP: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
