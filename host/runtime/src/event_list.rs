//! Lowering a batch's events into the guest: the canonical ABI's work, done
//! with fewer trips through wasmtime's memory accessors.
//!
//! wasmtime's generic lowering of `list<event>` looks up the instance's memory
//! three times per string (copy, pointer, length) besides the guest's
//! `realloc`: fifteen lookups per event, ~4% of a sandboxed batch. This
//! lowering allocates an event's five strings, then copies them and writes
//! their pointers in one view of memory. Its type is checked as the generic
//! one's (`EventRef`'s, field by field), and a guest that wants strings in
//! another encoding than UTF-8 gets the generic lowering.
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

/// The largest string the canonical ABI carries.
const MAX_STRING_BYTES: usize = (1 << 31) - 1;

/// The contract's `list<event>`, lowered field by field in one pass.
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

/// Bytes of one `event` in the list: five strings of a pointer and a length.
const EVENT_BYTES: usize = 5 * 8;
const _: () = assert!(<EventRef<'static> as ComponentType>::SIZE32 == EVENT_BYTES);

impl EventList<'_> {
    /// Copies the events into guest memory; returns the list's pointer and length.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let bytes = self
            .0
            .len()
            .checked_mul(EVENT_BYTES)
            .ok_or_else(|| wasmtime::format_err!("too many events to copy into the plugin"))?;
        let list = cx.realloc(0, 0, EventRef::ALIGN32, bytes)?;
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
