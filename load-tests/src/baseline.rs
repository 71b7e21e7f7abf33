//! The baseline endpoint: actix-web with the server's worker count, answering every POST with a fixed body.
//!
//! It runs as its own process (`omadm-load baseline-server`) so its CPU time is read the same way as the
//! server's, and answers with the exact bytes and content type the server gave a probe, so both are measured
//! on answers of the same size.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;

/// What the baseline answers with.
#[derive(Clone)]
struct FixedAnswer {
    content_type: String,
    body: Bytes,
}

/// Serves until killed. Prints `listening on ADDR` once bound.
pub fn serve(listen: &str, workers: usize, content_type: String, body: Bytes) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)?;
    println!("listening on {}", listener.local_addr()?);
    let answer = FixedAnswer { content_type, body };
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new().app_data(web::Data::new(answer.clone())).default_service(web::to(
                |answer: web::Data<FixedAnswer>, _body: Bytes| async move {
                    HttpResponse::Ok().content_type(answer.content_type.as_str()).body(answer.body.clone())
                },
            ))
        })
        .workers(workers)
        .listen(listener)?
        .run()
        .await
    })?;
    Ok(())
}
