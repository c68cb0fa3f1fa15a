//! Bytes from a client's socket, as the gateway reads them: the WebSocket codec (the
//! vendored actix-http, with the gateway's 16 KiB limit), then each text frame as a
//! gateway frame, then its payload as IDENTIFY, RESUME or a REQUEST. Nothing may panic,
//! and a frame that parses must serialize and parse back to itself.
#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame as WsFrame};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synctalk_gateway::protocol::{Frame, Identify, Resume};

fn gateway_text(text: &str) {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return;
    };
    let _ = serde_json::from_value::<Identify>(frame.d.clone());
    let _ = serde_json::from_value::<Resume>(frame.d.clone());
    let again: Frame = serde_json::from_str(&frame.to_text()).expect("a frame reads back");
    assert_eq!(again.op, frame.op);
    assert_eq!(again.t, frame.t);
    assert_eq!(again.s, frame.s);
    assert_eq!(again.nonce, frame.nonce);
}

fuzz_target!(|data: &[u8]| {
    // The payload alone, as the text of a frame.
    if let Ok(text) = std::str::from_utf8(data) {
        gateway_text(text);
    }
    // The raw stream, through the codec a server socket uses.
    let mut codec = Codec::new().max_size(16 * 1024);
    let mut buffer = BytesMut::from(data);
    for _ in 0..64 {
        match codec.decode(&mut buffer) {
            Ok(Some(WsFrame::Text(bytes))) => {
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    gateway_text(text);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
