//! The router parses every received request with this crate: parsing a valid
//! URI or header value must not allocate. Counted by a global allocator, per
//! thread so that tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use exum_address::{NameAddrRef, UriRef, name_addr_spans};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn parsing_valid_text_does_not_allocate() {
    let uris = [
        "sip:alice@contoso.com;opaque=app:voicemail",
        "sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr",
        "sip:+14255550100;phone-context=dp1@contoso.com;user=phone?subject=hi",
        "tel:+1-425-555-0100;ext=100",
    ];
    let n = allocations_of(|| {
        for text in uris {
            let u = UriRef::parse(text).expect("valid");
            assert!(u.param("transport").is_some() || u.params().count() < 10);
            assert!(UriRef::parse_request_uri(text).is_ok() || u.headers.is_some());
        }
    });
    assert_eq!(n, 0, "UriRef::parse allocated");

    let value = "\"Bob <B>\" <sip:bob@contoso.com;lr>;tag=9fx;reason=no-answer";
    let n = allocations_of(|| {
        let (uri, tag) = name_addr_spans(value).expect("closed");
        assert_eq!((&value[uri], tag.map(|t| &value[t])), ("sip:bob@contoso.com;lr", Some("9fx")));
        let parsed = NameAddrRef::parse(value).expect("valid");
        assert_eq!(parsed.tag(), Some("9fx"));
    });
    assert_eq!(n, 0, "name-addr parsing allocated");
}

#[test]
fn the_counter_sees_an_error_that_allocates() {
    // An unsupported scheme is reported with its name, which is allocated.
    let n = allocations_of(|| assert!(UriRef::parse("http://contoso.com").is_err()));
    assert!(n > 0, "the counting allocator counted nothing");
}
