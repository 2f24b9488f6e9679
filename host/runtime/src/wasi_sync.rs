//! The WASI calls that could block, answered without blocking.
//!
//! wasmtime-wasi's synchronous bindings run every call that may wait (a
//! blocking write to stdout or stderr, dropping a stream, polling, making a
//! UDP socket) through `block_on` on the ambient tokio runtime, and tokio
//! panics when the calling thread is already running one of its tasks: Weir
//! calls plugins from async code in every host (the pipeline, `weir serve`,
//! Lambda, the console). Left in place, a plugin that prints, panics (Rust
//! writes the message to stderr) or sleeps would panic the host.
//!
//! A plugin has nothing to wait for: no files, no network, a frozen clock, and
//! its stdout and stderr go to an in-memory capture that is always ready. So
//! these calls are linked over wasmtime-wasi's: stream calls complete at once
//! through the streams' non-blocking operations, and waiting on a pollable (a
//! sleep, in Rust) traps with a reason, as a plugin that never returns would be
//! stopped by its CPU limit.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode};
use wasmtime_wasi::p2::bindings::sync::io::poll::{self, Pollable};
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::bindings::sync::sockets::udp::IpAddressFamily;
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket;
use wasmtime_wasi::p2::{SocketError, SocketResult, StreamError, StreamResult, UdpSocket};

use crate::sandbox::Sandbox;

/// The trap of a plugin that waits.
const WAITING_REFUSED: &str =
    "plugins may not wait (a sleep, or a poll of wasi:io): Weir gives them nothing to wait for";

/// Links the replacements over what `wasmtime_wasi::p2::add_to_linker_sync`
/// defined (call that first).
pub(crate) fn link_over_blocking_calls(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    streams::add_to_linker::<Sandbox, NonBlocking>(linker, |s| NonBlockingView(&mut s.table))?;
    poll::add_to_linker::<Sandbox, NonBlocking>(linker, |s| NonBlockingView(&mut s.table))?;
    udp_create_socket::add_to_linker::<Sandbox, NonBlocking>(linker, |s| {
        NonBlockingView(&mut s.table)
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

struct NonBlocking;

impl HasData for NonBlocking {
    type Data<'a> = NonBlockingView<'a>;
}

/// The store's resources, seen by the replacements.
pub(crate) struct NonBlockingView<'a>(&'a mut ResourceTable);

/// What a full capture says it takes (WASI's most for one blocking write).
const TAKEN_WHEN_FULL: u64 = 4096;

impl NonBlockingView<'_> {
    fn table(&mut self) -> &mut ResourceTable {
        self.0
    }

    /// The bytes the stream keeps now; `None` once it is full (its bytes are
    /// then taken and not kept).
    fn room(&mut self, stream: Resource<OutputStream>) -> StreamResult<Option<u64>> {
        match streams::HostOutputStream::check_write(self.table(), stream) {
            Ok(room) => Ok(Some(room)),
            Err(StreamError::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn borrowed<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

impl streams::Host for NonBlockingView<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table(), err)
    }
}

/// A plugin's only output streams are its stdout and stderr (it has no files
/// and no network): captures that keep their first bytes
/// ([`crate::sandbox::Printed`]) and take the rest without keeping it, so that
/// printing never fails a plugin (Rust's `print!` panics on a failed write).
impl streams::HostOutputStream for NonBlockingView<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.table().delete(stream)?;
        Ok(())
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        Ok(self.room(stream)?.unwrap_or(TAKEN_WHEN_FULL))
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        let room = self.room(borrowed(&stream))?.unwrap_or(0);
        let kept = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if kept == 0 {
            return Ok(());
        }
        let mut bytes = bytes;
        bytes.truncate(kept);
        streams::HostOutputStream::write(self.table(), stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        streams::HostOutputStream::write(self, borrowed(&stream), bytes)?;
        streams::HostOutputStream::flush(self.table(), stream)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let zeroes = vec![0; usize::try_from(len.min(TAKEN_WHEN_FULL)).unwrap_or(0)];
        streams::HostOutputStream::blocking_write_and_flush(self, stream, zeroes)
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostOutputStream::subscribe(self.table(), stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        let zeroes = vec![0; usize::try_from(len.min(TAKEN_WHEN_FULL)).unwrap_or(0)];
        streams::HostOutputStream::write(self, stream, zeroes)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table(), stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table(), stream)
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table(), dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table(), dst, src, len)
    }
}

/// A plugin's stdin is empty: reads end at once.
impl streams::HostInputStream for NonBlockingView<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        self.table().delete(stream)?;
        Ok(())
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table(), stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table(), stream, len)
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table(), stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table(), stream, len)
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostInputStream::subscribe(self.table(), stream)
    }
}

impl poll::Host for NonBlockingView<'_> {
    fn poll(&mut self, _pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        Err(wasmtime::format_err!("{WAITING_REFUSED}"))
    }
}

impl poll::HostPollable for NonBlockingView<'_> {
    fn ready(&mut self, _pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        Err(wasmtime::format_err!("{WAITING_REFUSED}"))
    }

    fn block(&mut self, _pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        Err(wasmtime::format_err!("{WAITING_REFUSED}"))
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table(), pollable)
    }
}

/// The UDP interface's error conversions, as wasmtime-wasi makes them.
impl network::Host for NonBlockingView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        err: Resource<network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let err = self.table().get(&err)?;
        Ok(err.downcast_ref::<std::io::Error>().map(ErrorCode::from))
    }
}

impl network::HostNetwork for NonBlockingView<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.table().delete(network)?;
        Ok(())
    }
}

/// Plugins get no network (wasmtime-wasi's default, and Weir's).
impl udp_create_socket::Host for NonBlockingView<'_> {
    fn create_udp_socket(
        &mut self,
        _address_family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        Err(ErrorCode::AccessDenied.into())
    }
}
