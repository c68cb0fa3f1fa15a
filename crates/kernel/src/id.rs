//! Typed ids. Every id is a UUIDv7 (time-ordered, so ids sort by creation) wrapped
//! in a newtype per kind of resource.

/// Defines a UUIDv7 id newtype with serde, diesel and OpenAPI support.
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
            ::diesel::expression::AsExpression, ::diesel::deserialize::FromSqlRow,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = ::diesel::sql_types::Uuid)]
        pub struct $name(pub ::uuid::Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(::uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ::uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<::uuid::Uuid> for $name {
            fn from(value: ::uuid::Uuid) -> Self {
                Self(value)
            }
        }

        impl ::diesel::serialize::ToSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                <::uuid::Uuid as ::diesel::serialize::ToSql<
                    ::diesel::sql_types::Uuid,
                    ::diesel::pg::Pg,
                >>::to_sql(&self.0, out)
            }
        }

        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Uuid, ::diesel::pg::Pg> for $name {
            fn from_sql(
                bytes: ::diesel::pg::PgValue<'_>,
            ) -> ::diesel::deserialize::Result<Self> {
                <::uuid::Uuid as ::diesel::deserialize::FromSql<
                    ::diesel::sql_types::Uuid,
                    ::diesel::pg::Pg,
                >>::from_sql(bytes)
                .map(Self)
            }
        }

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .format(Some(::utoipa::openapi::SchemaFormat::KnownFormat(
                        ::utoipa::openapi::KnownFormat::Uuid,
                    )))
                    .description(Some(concat!("A ", stringify!($name), " (UUIDv7).")))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}

define_id!(
    /// The id of a user.
    UserId
);
define_id!(
    /// The id of a session: one signed-in device.
    SessionId
);
define_id!(
    /// The id of a guild (server).
    GuildId
);
define_id!(
    /// The id of a channel: a guild text, voice or category channel, a DM or a group DM.
    ChannelId
);
define_id!(
    /// The id of a call.
    CallId
);
define_id!(
    /// The id of a role in a guild. A guild's `@everyone` role has the guild's id.
    RoleId
);
define_id!(
    /// The id of a message (unique within its channel; time-ordered like every id).
    MessageId
);
