// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "tsvector", schema = "pg_catalog"))]
    pub struct Tsvector;
}

diesel::table! {
    attachments (id) {
        id -> Uuid,
        uploader_id -> Uuid,
        channel_id -> Nullable<Uuid>,
        message_id -> Nullable<Uuid>,
        filename -> Text,
        content_type -> Text,
        size -> Int8,
        duration_ms -> Nullable<Int4>,
        url_key -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        guild_id -> Uuid,
        actor_id -> Uuid,
        action -> Text,
        target_id -> Nullable<Uuid>,
        reason -> Nullable<Text>,
        changes -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    bans (guild_id, user_id) {
        guild_id -> Uuid,
        user_id -> Uuid,
        reason -> Nullable<Text>,
        banned_by -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    channel_overwrites (channel_id, target_id) {
        channel_id -> Uuid,
        target_id -> Uuid,
        kind -> Text,
        allow -> Int8,
        deny -> Int8,
    }
}

diesel::table! {
    channel_recipients (channel_id, user_id) {
        channel_id -> Uuid,
        user_id -> Uuid,
        added_at -> Timestamptz,
    }
}

diesel::table! {
    channels (id) {
        id -> Uuid,
        kind -> Text,
        guild_id -> Nullable<Uuid>,
        name -> Nullable<Text>,
        topic -> Nullable<Text>,
        parent_id -> Nullable<Uuid>,
        position -> Int4,
        owner_id -> Nullable<Uuid>,
        dm_low -> Nullable<Uuid>,
        dm_high -> Nullable<Uuid>,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    folder_items (folder_id, item_id) {
        folder_id -> Uuid,
        user_id -> Uuid,
        item_id -> Uuid,
        kind -> Text,
        position -> Int4,
        added_at -> Timestamptz,
    }
}

diesel::table! {
    folders (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        position -> Int4,
        created_at -> Timestamptz,
    }
}

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
    guilds (id) {
        id -> Uuid,
        name -> Text,
        owner_id -> Uuid,
        icon_url -> Nullable<Text>,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        member_count -> Int4,
    }
}

diesel::table! {
    invites (code) {
        code -> Text,
        guild_id -> Uuid,
        inviter_id -> Uuid,
        max_uses -> Int4,
        uses -> Int4,
        expires_at -> Nullable<Timestamptz>,
        target_user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
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
    member_roles (guild_id, user_id, role_id) {
        guild_id -> Uuid,
        user_id -> Uuid,
        role_id -> Uuid,
    }
}

diesel::table! {
    members (guild_id, user_id) {
        guild_id -> Uuid,
        user_id -> Uuid,
        nick -> Nullable<Text>,
        joined_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Tsvector;

    messages (channel_id, id) {
        channel_id -> Uuid,
        id -> Uuid,
        author_id -> Uuid,
        content -> Text,
        nonce -> Nullable<Text>,
        reply_to -> Nullable<Uuid>,
        mentions -> Array<Nullable<Uuid>>,
        mention_roles -> Array<Nullable<Uuid>>,
        mention_everyone -> Bool,
        pinned_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        edited_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        search -> Nullable<Tsvector>,
        has_reactions -> Bool,
        has_attachments -> Bool,
    }
}

diesel::table! {
    notification_settings (user_id, target_id) {
        user_id -> Uuid,
        target_id -> Uuid,
        target_kind -> Text,
        level -> Text,
        muted_until -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        title -> Text,
        body -> Text,
        data -> Jsonb,
        channel_id -> Nullable<Uuid>,
        message_id -> Nullable<Uuid>,
        read_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        push_state -> Text,
        push_attempts -> Int2,
        push_at -> Timestamptz,
        push_done -> Array<Nullable<Uuid>>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        topic -> Text,
        kind -> Text,
        domain -> Text,
        name -> Text,
        payload -> Json,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_published (id) {
        id -> Int8,
        position -> Int8,
        topic -> Text,
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
    push_subscriptions (id) {
        id -> Uuid,
        user_id -> Uuid,
        endpoint -> Text,
        p256dh -> Bytea,
        auth -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reactions (channel_id, message_id, emoji, user_id) {
        channel_id -> Uuid,
        message_id -> Uuid,
        emoji -> Text,
        user_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    read_states (user_id, channel_id) {
        user_id -> Uuid,
        channel_id -> Uuid,
        last_read_id -> Uuid,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    receipts (channel_id, message_id, user_id) {
        channel_id -> Uuid,
        message_id -> Uuid,
        user_id -> Uuid,
        delivered_at -> Nullable<Timestamptz>,
        read_at -> Nullable<Timestamptz>,
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
    roles (id) {
        id -> Uuid,
        guild_id -> Uuid,
        name -> Text,
        color -> Int4,
        permissions -> Int8,
        position -> Int4,
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

diesel::joinable!(attachments -> users (uploader_id));
diesel::joinable!(audit_log -> guilds (guild_id));
diesel::joinable!(audit_log -> users (actor_id));
diesel::joinable!(bans -> guilds (guild_id));
diesel::joinable!(channel_overwrites -> channels (channel_id));
diesel::joinable!(channel_recipients -> channels (channel_id));
diesel::joinable!(channel_recipients -> users (user_id));
diesel::joinable!(channels -> guilds (guild_id));
diesel::joinable!(folder_items -> folders (folder_id));
diesel::joinable!(folder_items -> users (user_id));
diesel::joinable!(folders -> users (user_id));
diesel::joinable!(gateway_sessions -> sessions (auth_session_id));
diesel::joinable!(gateway_sessions -> users (user_id));
diesel::joinable!(guilds -> users (owner_id));
diesel::joinable!(invites -> guilds (guild_id));
diesel::joinable!(members -> guilds (guild_id));
diesel::joinable!(members -> users (user_id));
diesel::joinable!(messages -> channels (channel_id));
diesel::joinable!(messages -> users (author_id));
diesel::joinable!(notification_settings -> users (user_id));
diesel::joinable!(notifications -> users (user_id));
diesel::joinable!(presences -> users (user_id));
diesel::joinable!(push_subscriptions -> users (user_id));
diesel::joinable!(reactions -> users (user_id));
diesel::joinable!(read_states -> channels (channel_id));
diesel::joinable!(read_states -> users (user_id));
diesel::joinable!(receipts -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(roles -> guilds (guild_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    attachments,
    audit_log,
    bans,
    channel_overwrites,
    channel_recipients,
    channels,
    folder_items,
    folders,
    gateway_nodes,
    gateway_sessions,
    guilds,
    invites,
    login_failures,
    member_roles,
    members,
    messages,
    notification_settings,
    notifications,
    outbox,
    outbox_published,
    outbox_relay,
    presences,
    push_subscriptions,
    reactions,
    read_states,
    receipts,
    refresh_tokens,
    relationships,
    roles,
    sessions,
    users,
);
