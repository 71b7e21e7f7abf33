//! The device edge alone on a listener: `/dm`, `/dm/s/{sid}`, `/repo`, `/bootstrap`, without the operator API,
//! the ops routes or the middleware of `omadm_gateway::server::run`, for tests that speak DM and nothing else.

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use omadm_gateway::AppState;
use omadm_gateway::device::DeviceEdge;

/// Serves `edge` over `state` on `listener` with `workers` workers, in the current actix system; stop it with
/// `handle.stop(true).await`.
pub fn serve(state: web::Data<AppState>, edge: DeviceEdge, listener: TcpListener, workers: usize) -> ServerHandle {
    let server = HttpServer::new(move || {
        let edge = edge.clone();
        App::new().app_data(state.clone()).configure(move |config| edge.configure(config))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}
