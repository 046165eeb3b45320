//! The on-disk format of segments: a file header, then record batches, each framed with its
//! length and a CRC-32C of its body.
//!
//! ```text
//! segment  := header batch*
//! header   := "CSLOGSEG" version:u32 flags:u32(=0) base_offset:u64              (24 bytes)
//! batch    := body_len:u32 crc32c(body):u32 body
//! body     := base_offset:u64 append_time_ms:i64 durable_before:u64 count:u32 record{count}
//! record   := event_time_ms:i64 (i64::MIN = none)
//!             key_len:u32 (u32::MAX = none) key
//!             header_count:u16 (name_len:u16 name value_len:u32 value){header_count}
//!             value_len:u32 value
//! ```
//! All integers are little endian. `durable_before` is the segment position up to which the
//! file was known to be durable when the batch was written; recovery uses it to tell a torn
//! tail (after the last durable point: cut) from corruption (before it: refuse to open).
//! A batch with `count = 0` is a marker written at clean shutdown; readers skip it.

use bytes::Bytes;

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"CSLOGSEG";
/// The segment format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment file header.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Size of a batch frame's length and checksum fields.
pub const FRAME_HEADER_LEN: usize = 8;
/// Size of the fixed part of a batch body.
pub const BODY_HEADER_LEN: usize = 28;
/// Largest batch body accepted (a larger length field is corruption).
pub const MAX_BATCH_BODY: usize = 256 * 1024 * 1024;

const NO_TIME: i64 = i64::MIN;
/// The smallest record: event time, key length, header count and value length, all empty.
const MIN_RECORD_LEN: usize = 8 + 4 + 2 + 4;
const NO_KEY: u32 = u32::MAX;

/// One record as stored and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Offset within the partition, strictly increasing.
    pub offset: u64,
    /// When the engine appended the batch holding this record (ms since the Unix epoch).
    pub append_time_ms: i64,
    /// The writer's own event time, if it gave one (ms since the Unix epoch).
    pub event_time_ms: Option<i64>,
    /// The partition key, if any.
    pub key: Option<Bytes>,
    /// String headers, in the order they were written.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub value: Bytes,
}

impl LogRecord {
    /// Bytes this record takes inside a batch.
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.key.as_deref(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.value.len(),
        )
    }
}

fn record_len<'a>(
    key: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    value_len: usize,
) -> usize {
    let headers: usize = headers.map(|(k, v)| 6 + k.len() + v.len()).sum();
    8 + 4 + key.map_or(0, <[u8]>::len) + 2 + headers + 4 + value_len
}

/// A batch of records encoded by the caller, before the writer gives it offsets.
///
/// Encoding happens on the caller's thread; the partition writer only fills in the body header
/// and combines checksums, so many writers encode in parallel.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    max_event_time_ms: Option<i64>,
}

/// Why a record could not be added to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A header name longer than 65,535 bytes, or more than 65,535 headers.
    HeaderTooLarge,
    /// The batch would exceed [`MAX_BATCH_BODY`].
    BatchTooLarge,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    /// An empty batch with room for `bytes` of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + BODY_HEADER_LEN + bytes);
        buf.resize(FRAME_HEADER_LEN + BODY_HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            max_event_time_ms: None,
        }
    }

    /// Bytes a record with these fields takes in a batch (to size batches before building).
    pub fn record_len<'a>(
        key: Option<&[u8]>,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        value_len: usize,
    ) -> usize {
        record_len(key, headers, value_len)
    }

    /// Appends one record.
    pub fn push<'a>(
        &mut self,
        key: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
        value: &[u8],
        event_time_ms: Option<i64>,
    ) -> Result<(), EncodeError> {
        let header_count = u16::try_from(headers.len()).map_err(|_| EncodeError::HeaderTooLarge)?;
        let len = record_len(key, headers.clone(), value.len());
        if self.buf.len() + len > FRAME_HEADER_LEN + MAX_BATCH_BODY {
            return Err(EncodeError::BatchTooLarge);
        }
        for (name, _) in headers.clone() {
            u16::try_from(name.len()).map_err(|_| EncodeError::HeaderTooLarge)?;
        }
        let start = self.buf.len();
        let buf = &mut self.buf;
        buf.reserve(len);
        buf.extend_from_slice(&event_time_ms.unwrap_or(NO_TIME).to_le_bytes());
        match key {
            Some(key) => {
                buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
                buf.extend_from_slice(key);
            }
            None => buf.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        buf.extend_from_slice(&header_count.to_le_bytes());
        for (name, value) in headers {
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
            buf.extend_from_slice(value.as_bytes());
        }
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buf.extend_from_slice(value);
        debug_assert_eq!(buf.len() - start, len);
        self.count += 1;
        if let Some(t) = event_time_ms {
            self.max_event_time_ms = Some(self.max_event_time_ms.map_or(t, |m| m.max(t)));
        }
        Ok(())
    }

    /// How many records the batch holds.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the whole frame.
    pub fn frame_len(&self) -> usize {
        self.buf.len()
    }

    /// Finishes the records part: checksums a large one here, so the writer only has to seal.
    pub fn finish(self) -> EncodedBatch {
        let records = &self.buf[FRAME_HEADER_LEN + BODY_HEADER_LEN..];
        let records_crc = (records.len() > RECHECKSUM_MAX_BYTES).then(|| crc32c::crc32c(records));
        EncodedBatch {
            buf: self.buf,
            count: self.count,
            records_crc,
        }
    }
}

/// Largest record section whose checksum `seal` computes again rather than combining.
const RECHECKSUM_MAX_BYTES: usize = 64 * 1024;

/// A finished batch waiting for its offsets.
#[derive(Debug)]
pub struct EncodedBatch {
    buf: Vec<u8>,
    count: u32,
    /// Checksum of the record section, taken by `finish` when it is larger than
    /// [`RECHECKSUM_MAX_BYTES`].
    records_crc: Option<u32>,
}

impl EncodedBatch {
    /// An empty marker batch (written at clean shutdown).
    pub fn marker() -> Self {
        BatchBuilder::default().finish()
    }

    /// Number of records.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Size of the framed batch on disk.
    pub fn frame_len(&self) -> usize {
        self.buf.len()
    }

    /// Fills in the body header and checksum; returns the bytes to write.
    pub fn seal(&mut self, base_offset: u64, append_time_ms: i64, durable_before: u64) -> &[u8] {
        let body_len = (self.buf.len() - FRAME_HEADER_LEN) as u32;
        let h = &mut self.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + BODY_HEADER_LEN];
        h[0..8].copy_from_slice(&base_offset.to_le_bytes());
        h[8..16].copy_from_slice(&append_time_ms.to_le_bytes());
        h[16..24].copy_from_slice(&durable_before.to_le_bytes());
        h[24..28].copy_from_slice(&self.count.to_le_bytes());
        let header_crc = crc32c::crc32c(h);
        let records = &self.buf[FRAME_HEADER_LEN + BODY_HEADER_LEN..];
        // Combining costs microseconds whatever the length (zlib's matrix method), while
        // hardware CRC runs at gigabytes per second: a small record section is checksummed
        // here after the header, a large one combined with the checksum `finish` took.
        let crc = match self.records_crc {
            Some(records_crc) => crc32c::crc32c_combine(header_crc, records_crc, records.len()),
            None => crc32c::crc32c_append(header_crc, records),
        };
        self.buf[0..4].copy_from_slice(&body_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

/// The fixed fields of a batch, read from a verified body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Append time of every record of the batch.
    pub append_time_ms: i64,
    /// Segment position known durable when the batch was written.
    pub durable_before: u64,
    /// Number of records.
    pub count: u32,
}

/// What is found at a position of a segment buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole batch whose checksum matches; `len` is the frame's total size.
    Valid {
        /// The batch's fixed fields.
        header: BatchHeader,
        /// Total size of the frame, header included.
        len: usize,
    },
    /// The buffer ends before the frame does; `needed` is the frame's total size if known.
    Incomplete {
        /// Bytes the frame needs in total, when its length field is readable.
        needed: Option<usize>,
    },
    /// Not a valid batch: a bad length or a checksum mismatch.
    Invalid(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the frame at the start of `buf`.
pub fn check_frame(buf: &[u8]) -> Frame {
    if buf.len() < FRAME_HEADER_LEN {
        return Frame::Incomplete { needed: None };
    }
    let body_len = u32_at(buf, 0) as usize;
    if !(BODY_HEADER_LEN..=MAX_BATCH_BODY).contains(&body_len) {
        return Frame::Invalid("batch length out of range");
    }
    let len = FRAME_HEADER_LEN + body_len;
    if buf.len() < len {
        return Frame::Incomplete { needed: Some(len) };
    }
    let body = &buf[FRAME_HEADER_LEN..len];
    if crc32c::crc32c(body) != u32_at(buf, 4) {
        return Frame::Invalid("batch checksum mismatch");
    }
    let header = BatchHeader {
        base_offset: u64_at(body, 0),
        append_time_ms: u64_at(body, 8) as i64,
        durable_before: u64_at(body, 16),
        count: u32_at(body, 24),
    };
    Frame::Valid { header, len }
}

/// Decodes the records of a verified frame (`frame` is the whole frame, header included).
///
/// The checksum has been checked, so a decoding failure means a writer bug or a checksum
/// collision; it is still an error, never a panic.
pub fn decode_records(header: &BatchHeader, frame: Bytes) -> Result<Vec<LogRecord>, &'static str> {
    // The count comes from the disk: no more room than the frame's bytes can hold records.
    let room = frame
        .len()
        .saturating_sub(FRAME_HEADER_LEN + BODY_HEADER_LEN)
        / MIN_RECORD_LEN;
    let mut records = Vec::with_capacity((header.count as usize).min(room));
    let mut cur = Cursor {
        buf: &frame,
        pos: FRAME_HEADER_LEN + BODY_HEADER_LEN,
    };
    for i in 0..header.count {
        let event_time = cur.u64()? as i64;
        let key_len = cur.u32()?;
        let key = if key_len == NO_KEY {
            None
        } else {
            Some(cur.bytes(&frame, key_len as usize)?)
        };
        let header_count = cur.u16()?;
        let mut headers = Vec::with_capacity(usize::from(header_count));
        for _ in 0..header_count {
            let name_len = usize::from(cur.u16()?);
            let name = cur.string(name_len)?;
            let value_len = cur.u32()? as usize;
            let value = cur.string(value_len)?;
            headers.push((name, value));
        }
        let value_len = cur.u32()? as usize;
        let value = cur.bytes(&frame, value_len)?;
        let offset = header
            .base_offset
            .checked_add(u64::from(i))
            .ok_or("batch offsets overflow")?;
        records.push(LogRecord {
            offset,
            append_time_ms: header.append_time_ms,
            event_time_ms: (event_time != NO_TIME).then_some(event_time),
            key,
            headers,
            value,
        });
    }
    if cur.pos != frame.len() {
        return Err("batch has trailing bytes");
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, &'static str> {
        let end = self.pos.checked_add(n).ok_or("record length overflow")?;
        if end > self.buf.len() {
            return Err("record runs past its batch");
        }
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let r = self.take(2)?;
        Ok(u16::from_le_bytes([
            self.buf[r.start],
            self.buf[r.start + 1],
        ]))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let r = self.take(4)?;
        Ok(u32_at(self.buf, r.start))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let r = self.take(8)?;
        Ok(u64_at(self.buf, r.start))
    }
    fn bytes(&mut self, frame: &Bytes, n: usize) -> Result<Bytes, &'static str> {
        let r = self.take(n)?;
        Ok(frame.slice(r))
    }
    fn string(&mut self, n: usize) -> Result<String, &'static str> {
        let r = self.take(n)?;
        String::from_utf8(self.buf[r].to_vec()).map_err(|_| "header is not UTF-8")
    }
}

/// Encodes a segment file header.
pub fn segment_header(base_offset: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base_offset.to_le_bytes());
    h
}

/// Checks a segment file header against the base offset its name gives.
pub fn check_segment_header(h: &[u8], base_offset: u64) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN || &h[0..8] != SEGMENT_MAGIC {
        return Err("not a cloudstream segment (bad magic bytes)".into());
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}; this build reads version {FORMAT_VERSION}"
        ));
    }
    if u32_at(h, 12) != 0 {
        return Err("segment header has unknown flags".into());
    }
    if u64_at(h, 16) != base_offset {
        return Err(format!(
            "segment header says base offset {}, its name says {base_offset}",
            u64_at(h, 16)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EncodedBatch {
        let mut b = BatchBuilder::default();
        b.push(Some(b"k"), [("a", "1")].into_iter(), b"hello", Some(7))
            .expect("push");
        b.push(None, std::iter::empty(), b"", None).expect("push");
        b.finish()
    }

    #[test]
    fn batch_round_trips() {
        let mut batch = sample();
        let bytes = Bytes::copy_from_slice(batch.seal(40, 1000, 24));
        let Frame::Valid { header, len } = check_frame(&bytes) else {
            panic!("frame not valid")
        };
        assert_eq!(len, bytes.len());
        assert_eq!(header.count, 2);
        let records = decode_records(&header, bytes).expect("decode");
        assert_eq!(records[0].offset, 40);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].headers, vec![("a".into(), "1".into())]);
        assert_eq!(records[0].event_time_ms, Some(7));
        assert_eq!(records[1].offset, 41);
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].event_time_ms, None);
        assert_eq!(
            records[0].encoded_len() + records[1].encoded_len() + 36,
            len
        );
    }

    /// Found by fuzzing: a frame's count and base offset come from the disk, so a damaged
    /// one must neither reserve room for billions of records nor overflow an offset.
    #[test]
    fn damaged_counts_and_offsets_are_errors() {
        let mut batch = sample();
        let bytes = Bytes::copy_from_slice(batch.seal(40, 1000, 24));
        let Frame::Valid { mut header, .. } = check_frame(&bytes) else {
            panic!("frame not valid")
        };
        header.count = u32::MAX;
        assert!(decode_records(&header, bytes.clone()).is_err());
        header.count = 2;
        header.base_offset = u64::MAX;
        assert_eq!(
            decode_records(&header, bytes).err(),
            Some("batch offsets overflow")
        );
    }

    #[test]
    fn small_and_large_batches_get_the_same_checksum() {
        // The record section is checksummed after the header up to RECHECKSUM_MAX_BYTES and
        // combined above it; both must give the checksum of the whole body.
        for payload_len in [10, RECHECKSUM_MAX_BYTES / 2, RECHECKSUM_MAX_BYTES * 3] {
            let mut b = BatchBuilder::default();
            b.push(None, std::iter::empty(), &vec![7; payload_len], None)
                .expect("push");
            let mut batch = b.finish();
            assert_eq!(
                batch.records_crc.is_some(),
                payload_len > RECHECKSUM_MAX_BYTES
            );
            let bytes = batch.seal(3, 1, 0).to_vec();
            assert_eq!(
                u32_at(&bytes, 4),
                crc32c::crc32c(&bytes[FRAME_HEADER_LEN..]),
                "payload of {payload_len} bytes"
            );
            assert!(matches!(check_frame(&bytes), Frame::Valid { .. }));
        }
    }

    #[test]
    fn every_flipped_bit_of_a_batch_is_detected() {
        let mut batch = sample();
        let bytes = batch.seal(0, 1, 0).to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(check_frame(&bad), Frame::Valid { .. }),
                "bit {bit} not detected"
            );
        }
    }

    #[test]
    fn truncated_frames_are_incomplete() {
        let mut batch = sample();
        let bytes = batch.seal(0, 1, 0).to_vec();
        for cut in 0..bytes.len() {
            assert!(matches!(
                check_frame(&bytes[..cut]),
                Frame::Incomplete { .. }
            ));
        }
    }

    #[test]
    fn segment_header_is_checked() {
        let h = segment_header(5);
        assert!(check_segment_header(&h, 5).is_ok());
        assert!(check_segment_header(&h, 6).is_err());
        let mut bad = h;
        bad[8] = 9;
        assert!(check_segment_header(&bad, 5)
            .expect_err("bad version")
            .contains("version"));
    }
}
