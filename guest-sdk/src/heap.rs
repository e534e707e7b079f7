//! The allocator of a plugin built for `wasm32-unknown-unknown`: a component that
//! imports no WASI at all, which the server instantiates in about two thirds of the
//! time a `wasm32-wasip2` build takes (Rust's standard library on wasip2 imports a
//! dozen `wasi:cli` and `wasi:io` interfaces, and every import is wired up anew for
//! each call's fresh instance). Only plugins that need nothing of WASI can do this;
//! [`crate::http`] and [`crate::random`] import `wasi:http` and `wasi:random` themselves
//! and work on either target.
//!
//! On that target the standard library allocates with dlmalloc straight from
//! `memory.grow`. It never uses the free part of the initial memory, past the stack and
//! the data (from `__heap_base`), so every call, on its fresh instance, would grow the
//! memory at least once, and the server would then shrink it back: two system calls and
//! a page-table update per call. This allocator is the same dlmalloc, handed that free
//! part first and grown memory after it, as wasi-libc's malloc does on wasip2 (where this
//! module is not built). `plugins/.cargo/config.toml` sizes the initial memory.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::{Cell, UnsafeCell};
use core::ptr;

/// A WebAssembly page.
const PAGE: usize = 64 * 1024;

extern "C" {
    /// Where the linker put the end of the stack and the data: the heap starts here.
    static __heap_base: u8;
}

/// Memory for dlmalloc: the first request gets everything from `__heap_base` to the end
/// of memory (grown first if that is too little), later ones freshly grown pages. Both
/// are zeroed: a fresh instance's memory past its data is, and so is grown memory.
struct InitialMemoryFirst {
    heap_given: Cell<bool>,
}

// SAFETY: `alloc` hands out each byte once (the initial heap once, then only memory it
// grew) and never frees; a component instance runs on one thread.
unsafe impl dlmalloc::Allocator for InitialMemoryFirst {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if self.heap_given.replace(true) {
            return grow(size);
        }
        let base = ptr::addr_of!(__heap_base) as usize;
        let end = wasm32::memory_size(0) * PAGE;
        let free = end.saturating_sub(base);
        if free < size {
            let (grown, _, _) = grow(size - free);
            if grown.is_null() {
                return (ptr::null_mut(), 0, 0);
            }
        }
        (base as *mut u8, wasm32::memory_size(0) * PAGE - base, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// Grows memory by enough whole pages for `size` bytes.
fn grow(size: usize) -> (*mut u8, usize, u32) {
    let pages = size.div_ceil(PAGE);
    match wasm32::memory_grow(0, pages) {
        usize::MAX => (ptr::null_mut(), 0, 0),
        previous => ((previous * PAGE) as *mut u8, pages * PAGE, 0),
    }
}

/// The global allocator: dlmalloc over [`InitialMemoryFirst`].
struct Heap(UnsafeCell<dlmalloc::Dlmalloc<InitialMemoryFirst>>);

// SAFETY: a component instance runs on one thread (this target has no threads).
unsafe impl Sync for Heap {}

impl Heap {
    #[allow(clippy::mut_from_ref)]
    fn get(&self) -> &mut dlmalloc::Dlmalloc<InitialMemoryFirst> {
        // SAFETY: one thread, and no allocation calls back into the allocator.
        unsafe { &mut *self.0.get() }
    }
}

// SAFETY: forwards to dlmalloc, whose methods have `GlobalAlloc`'s contracts.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.get().malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { self.get().calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.get().free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            self.get()
                .realloc(ptr, layout.size(), layout.align(), new_size)
        }
    }
}

#[global_allocator]
static HEAP: Heap = Heap(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
    InitialMemoryFirst {
        heap_given: Cell::new(false),
    },
)));
