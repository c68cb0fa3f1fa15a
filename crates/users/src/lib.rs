//! Users and profiles: `/users/@me` (read, update, soft delete), `/users/{id}` and the
//! username-prefix search at `/users`.
//!
//! Other crates use [`repo`] and [`domain`] (the auth crate creates accounts through
//! them) and the wire types in [`dto`].

pub mod domain;
pub mod dto;
pub mod events;
pub mod gateway;
pub mod model;
pub mod presence;
pub mod relationships;
pub mod repo;
mod routes;

use actix_web::web;
use utoipa::OpenApi;

pub use routes::UsersConfig;

/// Mounts the users routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// The users crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::get_me, routes::update_me, routes::delete_me, routes::get_user, routes::search_users,
        routes::list_relationships, routes::send_friend_request, routes::update_relationship,
        routes::delete_relationship
    ),
    components(schemas(
        dto::User, dto::CurrentUser, dto::UpdateCurrentUser, relationships::Relationship,
        relationships::RelationshipType, relationships::RelationshipRemoved, relationships::FriendRequest,
        relationships::RelationshipUpdate, relationships::RelationshipChange, presence::Presence, presence::Status
    )),
    tags((name = "users", description = "Users and profiles"))
)]
pub struct UsersApi;
