//! The process's global allocator: the system allocator, except that allocations of 1 GiB or
//! more come from lazily backed anonymous mappings (`MAP_NORESERVE`, Linux).
//!
//! Why: tiny_http 0.12 drains an unread request body on drop with `vec![0; remaining]`, so a
//! refused request that declares a huge Content-Length asks for that many zeroed bytes, and a
//! failed allocation aborts the process. A `MAP_NORESERVE` mapping costs only address space;
//! the drain loop writes at most one socket read (a few MiB) into its start, so only those
//! pages ever get memory.
//!
//! Beyond the address space (a zeroed request of 16 TiB or more that cannot be mapped), the
//! allocator hands out a 64 MiB lazily backed scratch mapping instead of failing. That breaks
//! the allocator contract, knowingly: nothing in this process asks for such sizes except that
//! drain loop (whose kernel `recv` into the oversized slice either fills a few MiB or fails
//! with EFAULT), and the alternative is a one-request remote crash. Replacing tiny_http's
//! connection handling removes the need (see the issue notes).

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped.
const HUGE: usize = 1 << 30;
/// Mappings are page-aligned; one header page before the data records the mapping's length.
const PAGE: usize = 4096;
/// Zeroed requests at least this large that cannot be mapped get the scratch mapping.
const ABSURD: usize = 1 << 44;
/// Size of the scratch mapping.
const SCRATCH: usize = 64 << 20;

pub struct Allocator;

fn mapped(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= HUGE && layout.align() <= PAGE
}

/// Maps `len` data bytes after a header page; returns the data pointer or null.
#[cfg(target_os = "linux")]
unsafe fn map(len: usize) -> *mut u8 {
    let Some(total) = len.checked_add(PAGE) else {
        return std::ptr::null_mut();
    };
    let base = libc::mmap(
        std::ptr::null_mut(),
        total,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if base == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    base.cast::<usize>().write(total);
    base.cast::<u8>().add(PAGE)
}

#[cfg(not(target_os = "linux"))]
unsafe fn map(_len: usize) -> *mut u8 {
    std::ptr::null_mut()
}

/// Unmaps what `map` returned.
#[cfg(target_os = "linux")]
unsafe fn unmap(data: *mut u8) {
    let base = data.sub(PAGE);
    let total = base.cast::<usize>().read();
    libc::munmap(base.cast(), total);
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_data: *mut u8) {}

// SAFETY: every pointer handed out is either from System (returned to System) or from `map`
// (page-aligned, zero-filled, returned with `unmap`, which reads the length `map` recorded);
// which one is decided by `mapped(layout)`, the same on alloc and dealloc. The one exception
// to "at least `layout.size()` bytes" is the scratch mapping described in the module docs.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !mapped(&layout) {
            return System.alloc_zeroed(layout);
        }
        // Fresh anonymous pages are zero.
        let p = map(layout.size());
        if p.is_null() && layout.size() >= ABSURD {
            map(SCRATCH)
        } else {
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            unmap(ptr)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !mapped(&layout) && !mapped(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_zeroed_allocations_are_lazy_and_usable() {
        let a = Allocator;
        // 1 TiB: far beyond this machine's memory, yet only touched pages cost anything.
        let layout = Layout::from_size_align(1 << 40, 1).unwrap();
        // SAFETY: each pointer is used within its layout and freed with it.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(*p, 0);
            *p.add((1 << 40) - 1) = 7;
            assert_eq!(*p.add((1 << 40) - 1), 7);
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null() && *q == 0);
            a.dealloc(q, Layout::from_size_align(4096, 1).unwrap());
            let small = Layout::from_size_align(64, 8).unwrap();
            let s = a.alloc_zeroed(small);
            *s = 9;
            let grown = a.realloc(s, small, HUGE);
            assert!(!grown.is_null() && *grown == 9);
            a.dealloc(grown, Layout::from_size_align(HUGE, 8).unwrap());
            // Beyond the address space: the scratch mapping, not a failure.
            let absurd = Layout::from_size_align(9_000_000_000_000_000_000, 1).unwrap();
            let z = a.alloc_zeroed(absurd);
            assert!(!z.is_null() && *z == 0);
            a.dealloc(z, absurd);
        }
    }
}
