//! The connection cap against slow clients, on a real loopback listener.

use super::serve;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 4;

async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    tokio::spawn(async move { serve("test", listener, router, LIMIT).await });
    address
}

/// One whole request on a kept-alive connection; the response's body.
async fn ask(stream: &mut TcpStream) -> std::io::Result<String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.ends_with(b"hello") {
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
            .await
            .map_err(|_| std::io::Error::other("no answer within 2 s"))??;
        if read == 0 {
            return Err(std::io::Error::other("closed by the server"));
        }
        response.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Opens a connection that sends half a request and then nothing.
async fn slow_client(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    // Lets the server accept it before the next one comes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream
}

/// Whether the server has closed `stream` (it reads end of file or a reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn slow_clients_are_dropped_before_a_kept_alive_prompt_client() {
    let address = start().await;
    let mut prompt = TcpStream::connect(address).await.unwrap();
    assert!(ask(&mut prompt).await.unwrap().starts_with("HTTP/1.1 200"));

    let mut slow = Vec::new();
    for _ in 0..3 * LIMIT {
        slow.push(slow_client(address).await);
    }
    // The kept-alive connection is the oldest, but it has been served: it stays.
    assert!(ask(&mut prompt).await.unwrap().starts_with("HTTP/1.1 200"));
    let mut dropped = 0;
    for stream in &mut slow {
        dropped += usize::from(closed(stream).await);
    }
    // The prompt client and the newest slow ones fill the cap.
    assert_eq!(dropped, slow.len() - (LIMIT - 1));
    // A new prompt client is served too.
    let mut newcomer = TcpStream::connect(address).await.unwrap();
    assert!(ask(&mut newcomer)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn among_served_connections_the_oldest_goes() {
    let address = start().await;
    let mut kept = Vec::new();
    for _ in 0..LIMIT + 1 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        ask(&mut stream).await.unwrap();
        kept.push(stream);
    }
    assert!(closed(&mut kept[0]).await, "the oldest was not dropped");
    for stream in &mut kept[1..] {
        assert!(ask(stream).await.is_ok());
    }
}
