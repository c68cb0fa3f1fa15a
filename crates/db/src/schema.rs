// @generated automatically by Diesel CLI.

diesel::table! {
    gateway_nodes (id) {
        id -> Uuid,
        started_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        position -> Int8,
    }
}

diesel::table! {
    gateway_sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        auth_session_id -> Uuid,
        domains -> Array<Nullable<Text>>,
        node_id -> Nullable<Uuid>,
        epoch -> Int4,
        base_seq -> Int8,
        base_position -> Int8,
        base_topics -> Array<Nullable<Text>>,
        base_skip -> Array<Nullable<Int8>>,
        connected -> Bool,
        status -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    login_failures (subject) {
        subject -> Text,
        failures -> Int4,
        retry_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        position -> Nullable<Int8>,
        topic -> Text,
        kind -> Text,
        domain -> Text,
        name -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_relay (id) {
        id -> Int4,
        position -> Int8,
        floor -> Int8,
    }
}

diesel::table! {
    presences (user_id) {
        user_id -> Uuid,
        status -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        successor_hash -> Nullable<Bytea>,
        successor_sealed -> Nullable<Bytea>,
    }
}

diesel::table! {
    relationships (user_id, other_id) {
        user_id -> Uuid,
        other_id -> Uuid,
        kind -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        device_id -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        email -> Text,
        password_hash -> Text,
        display_name -> Nullable<Text>,
        avatar_url -> Nullable<Text>,
        bio -> Nullable<Text>,
        status_text -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(gateway_sessions -> sessions (auth_session_id));
diesel::joinable!(gateway_sessions -> users (user_id));
diesel::joinable!(presences -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    gateway_nodes,
    gateway_sessions,
    login_failures,
    outbox,
    outbox_relay,
    presences,
    refresh_tokens,
    relationships,
    sessions,
    users,
);
