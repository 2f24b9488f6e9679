//! Lowering a batch's events into the guest: the canonical ABI's work, done
//! with fewer trips through wasmtime's memory accessors.
//!
//! Contract 0.2.0 ([`EventBlock`]): the batch's texts go into one string and
//! its events into one list of spans: two calls of the guest's `realloc` per
//! batch, and one view of memory to fill both.
//!
//! Contract 0.1.0 ([`EventList`]): each of an event's five texts is a string
//! of its own, allocated by the guest's `realloc` (each call a trip into the
//! guest, ~40 ns). wasmtime's generic lowering of `list<event>` also looks up
//! the instance's memory three times per string (copy, pointer, length):
//! fifteen lookups per event, ~4% of a sandboxed batch. This lowering
//! allocates an event's five strings, then copies them and writes their
//! pointers in one view of memory. Its type is checked as the generic one's
//! (`EventRef`'s, field by field), and a guest that wants strings in another
//! encoding than UTF-8 gets the generic lowering.
//!
//! It implements wasmtime's `Lower` by hand, which leans on items wasmtime
//! keeps for its derive macros (`__internal`): pinned with wasmtime, and any
//! change there breaks the build, not the behaviour.

use std::mem::MaybeUninit;

use wasmtime::ValRaw;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

use crate::bindings::EventRef;
use crate::bindings::v0_2::weir::plugin::types::{Event as SpanEvent, Events as WitEvents};

/// The largest string the canonical ABI carries.
const MAX_STRING_BYTES: usize = (1 << 31) - 1;

/// Contract 0.1.0's `list<event>`, lowered field by field in one pass.
#[derive(Clone, Copy)]
pub(crate) struct EventList<'a>(pub(crate) &'a [EventRef<'a>]);

// SAFETY: the ABI and the flat representation are those of `[EventRef]`
// (a pointer and a length), and the type check is its own.
#[allow(unsafe_code)] // implementing wasmtime's traits; no unsafe operation
unsafe impl ComponentType for EventList<'_> {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[EventRef<'_>] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes exactly what `[EventRef]`'s lowering writes: the list's
// pointer and length, and in the list each event's five (pointer, length)
// pairs, in the record's field order, each string allocated by the guest's
// `realloc` and bounds-checked by it.
#[allow(unsafe_code)] // implementing wasmtime's traits; no unsafe operation
unsafe impl Lower for EventList<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return self.0.linear_lower_to_flat(cx, ty, dst);
        }
        let (ptr, len) = self.store(cx)?;
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        if !utf8(cx) {
            return self.0.linear_lower_to_memory(cx, ty, offset);
        }
        let (ptr, len) = self.store(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(len)?.to_le_bytes();
        Ok(())
    }
}

fn utf8<T>(cx: &LowerContext<'_, T>) -> bool {
    matches!(cx.options().string_encoding, StringEncoding::Utf8)
}

/// Bytes of one `event` in the list: five strings of a pointer and a length
/// (0.1.0), or five spans of an offset and a length (0.2.0).
const EVENT_BYTES: usize = 5 * 8;
const _: () = assert!(<EventRef<'static> as ComponentType>::SIZE32 == EVENT_BYTES);
const _: () = assert!(<SpanEvent as ComponentType>::SIZE32 == EVENT_BYTES);

/// Bytes of a list of `events` events.
fn list_bytes(events: usize) -> wasmtime::Result<usize> {
    events
        .checked_mul(EVENT_BYTES)
        .ok_or_else(|| wasmtime::format_err!("too many events to copy into the plugin"))
}

impl EventList<'_> {
    /// Copies the events into guest memory; returns the list's pointer and length.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let list = cx.realloc(0, 0, EventRef::ALIGN32, list_bytes(self.0.len())?)?;
        for (i, event) in self.0.iter().enumerate() {
            let fields = event.fields();
            let mut at = [0usize; 5];
            for (slot, text) in at.iter_mut().zip(fields) {
                if text.len() > MAX_STRING_BYTES {
                    wasmtime::bail!(
                        "string length of {} too large to copy into wasm",
                        text.len()
                    );
                }
                *slot = cx.realloc(0, 0, 1, text.len())?;
            }
            let memory = cx.as_slice_mut();
            let record = list + i * EVENT_BYTES;
            for (field, (&ptr, text)) in at.iter().zip(fields).enumerate() {
                memory[ptr..][..text.len()].copy_from_slice(text.as_bytes());
                let pair = &mut memory[record + field * 8..][..8];
                pair[..4].copy_from_slice(&u32::try_from(ptr)?.to_le_bytes());
                pair[4..].copy_from_slice(&u32::try_from(text.len())?.to_le_bytes());
            }
        }
        Ok((list, self.0.len()))
    }
}

/// Contract 0.2.0's `events` record: the batch's texts back to back in one
/// string, and per event the (offset, length) of each of its texts in it.
#[derive(Clone, Copy)]
pub(crate) struct EventBlock<'a>(pub(crate) &'a [EventRef<'a>]);

// SAFETY: the ABI, the flat representation (two pointer pairs) and the type
// check are those of the generated `events` record.
#[allow(unsafe_code)] // implementing wasmtime's traits; no unsafe operation
unsafe impl ComponentType for EventBlock<'_> {
    type Lower = [ValRaw; 4];

    const ABI: CanonicalAbiInfo = <WitEvents as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WitEvents as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes what the generated `events` record's lowering would write for
// the same text and spans: the string's and the list's pointer and length,
// each allocated by the guest's `realloc` and bounds-checked by it.
#[allow(unsafe_code)] // implementing wasmtime's traits; no unsafe operation
unsafe impl Lower for EventBlock<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 4]>,
    ) -> wasmtime::Result<()> {
        let [text, text_len, list, events] = self.store(cx)?;
        dst.write([
            ValRaw::i64(text as i64),
            ValRaw::i64(text_len as i64),
            ValRaw::i64(list as i64),
            ValRaw::i64(events as i64),
        ]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let words = self.store(cx)?;
        for (i, word) in words.into_iter().enumerate() {
            *cx.get::<4>(offset + 4 * i) = u32::try_from(word)?.to_le_bytes();
        }
        Ok(())
    }
}

impl EventBlock<'_> {
    /// Copies the texts and writes the spans; returns the text's pointer and
    /// length and the list's.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<[usize; 4]> {
        if !utf8(cx) {
            // Spans count UTF-8 bytes; a guest keeping strings in another
            // encoding would read them wrong.
            wasmtime::bail!(
                "the plugin keeps its strings in {:?}; contract 0.2.0 needs UTF-8 \
                 (the default of Rust, componentize-py and jco)",
                cx.options().string_encoding
            );
        }
        let text_len = self
            .0
            .iter()
            .flat_map(|event| event.fields())
            .try_fold(0usize, |total, text| total.checked_add(text.len()))
            .filter(|&total| total <= MAX_STRING_BYTES)
            .ok_or_else(|| {
                wasmtime::format_err!(
                    "the batch's texts exceed the {MAX_STRING_BYTES} bytes one plugin call carries"
                )
            })?;
        let list_bytes = list_bytes(self.0.len())?;
        let text = cx.realloc(0, 0, 1, text_len)?;
        let list = cx.realloc(0, 0, SpanEvent::ALIGN32, list_bytes)?;
        let memory = cx.as_slice_mut();
        let mut offset = 0usize;
        for (i, event) in self.0.iter().enumerate() {
            let record = list + i * EVENT_BYTES;
            for (field, field_text) in event.fields().into_iter().enumerate() {
                let len = field_text.len();
                memory[text + offset..][..len].copy_from_slice(field_text.as_bytes());
                let span = &mut memory[record + field * 8..][..8];
                // Both fit: the total was checked against MAX_STRING_BYTES.
                span[..4].copy_from_slice(&(offset as u32).to_le_bytes());
                span[4..].copy_from_slice(&(len as u32).to_le_bytes());
                offset += len;
            }
        }
        Ok([text, text_len, list, self.0.len()])
    }
}
