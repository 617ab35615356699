//! Unit tests of the bounded line framing.

use super::*;

fn decode_all(decoder: &mut BoundedLines, chunks: &[&[u8]]) -> Vec<Frame> {
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
            frames.push(frame);
        }
        assert!(
            buffer.len() <= decoder.max_line_bytes + 1,
            "the decoder holds {} bytes",
            buffer.len()
        );
    }
    while let Some(frame) = decoder.decode_eof(&mut buffer).unwrap() {
        frames.push(frame);
    }
    frames
}

#[test]
fn lines_are_split_on_newlines_across_chunks() {
    let mut decoder = BoundedLines::new(64);
    let frames = decode_all(&mut decoder, &[b"{\"a\":1}\n{\"b\"", b":2}\r\n\n", b"tail"]);
    assert_eq!(
        frames,
        [
            Frame::Line(b"{\"a\":1}".to_vec()),
            Frame::Line(b"{\"b\":2}".to_vec()),
            Frame::Line(Vec::new()),
            Frame::Line(b"tail".to_vec()),
        ]
    );
}

#[test]
fn an_oversized_line_is_dropped_and_reading_resumes_after_it() {
    let mut decoder = BoundedLines::new(16);
    let long = format!("{{\"id\":7,\"x\":\"{}\"}}", "y".repeat(1000));
    let mut chunks: Vec<&[u8]> = long.as_bytes().chunks(10).collect();
    chunks.push(b"\n{\"ok\":1}\n");
    let frames = decode_all(&mut decoder, &chunks);
    assert_eq!(frames.len(), 2, "{frames:?}");
    match &frames[0] {
        Frame::Oversized { length, head, tail } => {
            assert_eq!(*length, long.len());
            assert!(head.starts_with(b"{\"id\":7"));
            assert!(tail.ends_with(b"yy\"}"));
            assert_eq!(oversized_message_id(head, tail), Some(7));
        }
        other => panic!("expected an oversized frame, got {other:?}"),
    }
    assert_eq!(frames[1], Frame::Line(b"{\"ok\":1}".to_vec()));
}

#[test]
fn a_line_of_exactly_the_limit_passes() {
    let mut decoder = BoundedLines::new(4);
    let frames = decode_all(&mut decoder, &[b"abcd\nabcde\n"]);
    assert_eq!(frames[0], Frame::Line(b"abcd".to_vec()));
    assert!(matches!(frames[1], Frame::Oversized { length: 5, .. }));
}

#[test]
fn the_id_is_found_first_or_last_but_never_inside_a_string() {
    assert_eq!(
        oversized_message_id(
            b"{\"result\":{\"text\":\"a",
            b"zz\"}},\"jsonrpc\":\"2.0\",\"id\": 42}"
        ),
        Some(42)
    );
    assert_eq!(
        oversized_message_id(
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\"",
            b"\\\"id\\\":9 \"}}"
        ),
        Some(3)
    );
    assert_eq!(oversized_message_id(b"no id here", b"none"), None);
}
