//! The control-socket protocol decoders: the server's request line
//! (`read_request`) and the client's frame reader (`read_frame`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensor::control::{Frame, read_frame, read_request};
use sensor::filter;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        // The server reading a client's request, then planning with it.
        let mut input = data;
        if let Ok(request) = read_request(&mut input).await {
            let _ = filter::compile(&request.filter);
            // What it decoded is what a client would have sent.
            let line = request.to_line();
            let mut again = line.as_bytes();
            assert_eq!(read_request(&mut again).await.as_ref(), Ok(&request));
        }

        // The client reading the server's frames until the stream ends.
        let mut input = data;
        for _ in 0..64 {
            match read_frame(&mut input).await {
                Ok(Some(Frame::Record(record))) => {
                    // A record from a misbehaving server still prints.
                    let _ = sensor::inspect::output::text_line(&record.packet, "00:00:00");
                }
                Ok(Some(Frame::Message(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
    });
});
