//! MQTT 3.1.1 packets out of a device's byte stream, for the gateway ([`crate::gateway`]): each
//! one raw (to forward verbatim) and parsed (to hold to the policy). Synchronous and free of
//! the rest of the edge (only rumqttc's codec and `bytes`), so that the `framer` fuzz target
//! compiles this very file (`fuzz/src/lib.rs`) and `tests/fuzz_harness.rs` runs the same body
//! on stable.

use bytes::BytesMut;
use rumqttc::mqttbytes;
use rumqttc::Packet;

/// Why the bytes are not a packet the gateway passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The fixed header announces more than the limit (the size it announced); refused from
    /// the header alone, before the rest is read.
    Oversize(usize),
    Malformed(String),
}

/// The first whole packet of `buf`, taken out of it and parsed as MQTT 3.1.1; `Ok(None)` when
/// `buf` holds only part of one (read more and call again). No packet larger than
/// `max_packet_bytes` (remaining length) is ever buffered beyond its header.
pub fn next_frame(
    buf: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<(BytesMut, Packet)>, FrameError> {
    let Some(raw) = next_raw_frame(buf, max_packet_bytes)? else {
        return Ok(None);
    };
    let packet = Packet::read(&mut raw.clone(), max_packet_bytes)
        .map_err(|e| FrameError::Malformed(format!("{e:?}")))?;
    Ok(Some((raw, packet)))
}

/// The first whole packet of `buf`, unparsed (the fixed header is the same in MQTT 3.1.1 and 5):
/// the same framing and limit as [`next_frame`].
pub fn next_raw_frame(
    buf: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<BytesMut>, FrameError> {
    match mqttbytes::check(buf.iter(), max_packet_bytes) {
        Ok(header) => Ok(Some(buf.split_to(header.frame_length()))),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(FrameError::Oversize(n)),
        Err(e) => Err(FrameError::Malformed(format!("{e:?}"))),
    }
}

/// Packet limit the fuzz body frames with: small, so that the oversize path is reached too.
pub const FUZZ_MAX_PACKET_BYTES: usize = 4096;

/// Target `framer`: any bytes, fed in reads of the sizes the first byte picks, through
/// [`next_frame`]: no panic; frames never overlap or invent bytes (what was framed is a prefix
/// of the input, in order), each is within the limit, and an oversize header is refused as
/// such.
pub fn fuzz_frames(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut buf = BytesMut::new();
    let mut framed: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let end = (fed + step).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            match next_frame(&mut buf, FUZZ_MAX_PACKET_BYTES) {
                Ok(Some((raw, _packet))) => {
                    // Fixed header (at most 5 bytes) plus the remaining length.
                    assert!(
                        raw.len() <= FUZZ_MAX_PACKET_BYTES + 5,
                        "{} bytes",
                        raw.len()
                    );
                    framed.extend_from_slice(&raw);
                }
                Ok(None) => break,
                Err(FrameError::Oversize(n)) => {
                    assert!(n > FUZZ_MAX_PACKET_BYTES);
                    return check_prefix(input, &framed);
                }
                Err(FrameError::Malformed(why)) => {
                    assert!(!why.is_empty());
                    return check_prefix(input, &framed);
                }
            }
        }
    }
    check_prefix(input, &framed);
}

fn check_prefix(input: &[u8], framed: &[u8]) {
    assert!(input.starts_with(framed), "frames are the input, in order");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_over_the_limit_is_refused_before_its_body_arrives() {
        // PUBLISH announcing 10,000 bytes; only the header is there.
        let mut buf = BytesMut::from(&[0x30, 0x90, 0x4e][..]);
        assert_eq!(
            next_frame(&mut buf, 4096),
            Err(FrameError::Oversize(10_000))
        );
        let mut partial = BytesMut::from(&[0x30, 0x05, 0x00][..]);
        assert_eq!(next_frame(&mut partial, 4096), Ok(None));
        fuzz_frames(&[3, 0x30, 0x90, 0x4e, 1, 2, 3]);
    }
}
