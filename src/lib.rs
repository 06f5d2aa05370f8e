//! torrentdrive: a self-hosted, multi-user cloud drive that fetches torrents.
//!
//! Layers, from the bottom: [`store`] (metadata in redb) and [`blob`] (file contents),
//! [`drive`] (the `Drive` of one user over both), [`users`], then [`api`] and [`control`]
//! (management), [`server`] (HTTP front ends) and [`cli`].

pub mod api;
pub mod backup;
pub mod blob;
pub mod cli;
pub mod config;
pub mod control;
pub mod drive;
pub mod janitor;
pub mod metrics;
pub mod server;
pub mod service;
pub mod sessions;
pub mod signin;
pub mod size;
mod staging;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod torrents;
pub mod traffic;
pub mod users;
pub mod web;
