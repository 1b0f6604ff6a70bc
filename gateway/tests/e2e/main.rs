//! End-to-end tests: the real gateway binary, real upstream servers, real
//! sockets on loopback. One test binary, so the suites build once and run in
//! parallel (each test has its own gateway process and ports).

mod harness;

mod admin;
mod balancing;
mod etcd;
mod lifecycle;
mod plugins;
mod protocols;
mod reload;
mod routing;
mod tls;
mod upgrade;
