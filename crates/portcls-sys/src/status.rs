//! The `NTSTATUS` values the miniport returns or checks.

use crate::types::NTSTATUS;

// The values are the bit patterns of `ntstatus.h`; the casts only reinterpret
// the unsigned literal as the signed `NTSTATUS`.
#[allow(clippy::cast_possible_wrap)]
const fn st(v: u32) -> NTSTATUS {
    v as NTSTATUS
}

pub const STATUS_SUCCESS: NTSTATUS = 0;
pub const STATUS_PENDING: NTSTATUS = 0x0000_0103;
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = st(0x8000_0005);
pub const STATUS_NO_MORE_ENTRIES: NTSTATUS = st(0x8000_001A);
pub const STATUS_UNSUCCESSFUL: NTSTATUS = st(0xC000_0001);
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = st(0xC000_0002);
pub const STATUS_INVALID_PARAMETER: NTSTATUS = st(0xC000_000D);
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = st(0xC000_0010);
pub const STATUS_NO_MEMORY: NTSTATUS = st(0xC000_0017);
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = st(0xC000_0023);
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = st(0xC000_00A3);
/// `SetWritePacket`: a packet number higher than the buffer can hold.
pub const STATUS_DATA_OVERRUN: NTSTATUS = st(0xC000_003C);
/// `SetWritePacket`: a packet already transferred or being transferred.
pub const STATUS_DATA_LATE_ERROR: NTSTATUS = st(0xC000_003D);
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = st(0xC000_0206);
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = st(0xC000_009A);
pub const STATUS_NOT_SUPPORTED: NTSTATUS = st(0xC000_00BB);
pub const STATUS_NO_MATCH: NTSTATUS = st(0xC000_0272);
pub const STATUS_NOT_FOUND: NTSTATUS = st(0xC000_0225);
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = st(0xC000_0184);
pub const STATUS_DEVICE_BUSY: NTSTATUS = st(0x8000_0011);
pub const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = st(0xC000_0035);
/// `ZwClose` / `ZwQueryValueKey`: not an open handle.
pub const STATUS_INVALID_HANDLE: NTSTATUS = st(0xC000_0008);
/// `ZwQueryValueKey`: no value of that name under the key.
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = st(0xC000_0034);
/// What `KsAddObjectCreateItemToDeviceHeader` (and so `PcRegisterSubdevice`)
/// returns when every create-item slot is taken (Microsoft Learn, ks.h).
pub const STATUS_ALLOTTED_SPACE_EXCEEDED: NTSTATUS = st(0xC000_0099);
pub const STATUS_DEVICE_CONFIGURATION_ERROR: NTSTATUS = st(0xC000_0182);
/// `STATUS_NOINTERFACE` as `ntstatus.h` defines it (0xC00002B9): the
/// `NTSTATUS` a PortCls `QueryInterface` returns for an interface the object
/// does not have. Not to be confused with [`E_NOINTERFACE`].
pub const STATUS_NOINTERFACE: NTSTATUS = st(0xC000_02B9);
/// COM's `E_NOINTERFACE` (0x80004002) reinterpreted as an `NTSTATUS`; also an
/// error for `NT_SUCCESS`. Kept for callers that compare against the COM value.
pub const E_NOINTERFACE: NTSTATUS = st(0x8000_4002);

/// `NT_SUCCESS`: true for success and informational codes.
#[must_use]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}
