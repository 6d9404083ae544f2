//! `/api/users`: list, create, read, replace, delete.

use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use uuid::Uuid;

use super::{Call, HandlerResult};
use crate::apidoc::{Schemas, named, query_param};
use crate::domain::{Email, Invalid, NewUser, UserName};
use crate::echo::echo;
use crate::error::ApiError;
use crate::input::query;
use crate::reply::{empty, json};
use crate::service::{Mutation, Query, WriteError};

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The server id of the instance that created it.
    pub created_by: String,
}

impl From<entity::users::Model> for UserDto {
    fn from(m: entity::users::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            email: m.email,
            created_at: m.created_at,
            updated_at: m.updated_at,
            created_by: m.created_by,
        }
    }
}

/// Body of `POST /api/users` and `PUT /api/users/:id`. Both fields are required; they are
/// optional here so that a missing one is named in the error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// The schema of [`UserInput`] as the document gives it: exactly what the API accepts.
pub fn input_schema(schemas: &mut Schemas) -> RefOr<Schema> {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(UserName::MAX_CHARS_AS_SENT))
        .pattern(Some(UserName::pattern()))
        .description(Some(
            "1-100 characters once white space and invisible characters (zero-width spaces, \
             other format characters, fillers) are trimmed from both ends, and at most 500 as \
             sent; no control characters, no bidirectional controls (U+202A-U+202E, \
             U+2066-U+2069)",
        ));
    let email = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(Email::MAX_CHARS))
        .pattern(Some(Email::pattern()))
        .description(Some(
            "local@domain, at most 254 characters, trimmed of white space: a local part of \
             1-64 visible characters, a domain of ASCII labels (internationalised domains in \
             their xn-- form); unique regardless of letter case and Unicode normalisation",
        ));
    let input = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("name", name)
        .property("email", email)
        .required("name")
        .required("email")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    named(schemas, "UserInput", input)
}

impl TryFrom<UserInput> for NewUser {
    type Error = Invalid;

    fn try_from(input: UserInput) -> Result<Self, Invalid> {
        let required = |field: &str| Invalid(format!("`{field}` is required"));
        let name = UserName::parse(&input.name.ok_or_else(|| required("name"))?)?;
        let email = Email::parse(&input.email.ok_or_else(|| required("email"))?)?;
        Ok(Self { name, email })
    }
}

/// One user, with the instance that answered.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    pub user: UserDto,
    pub server_id: String,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserListBody {
    pub users: Vec<UserDto>,
    /// All users, not just this page.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    pub server_id: String,
}

/// Query of `GET /api/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

const LIMIT: query::Number = query::Number {
    name: "limit",
    description: "page size",
    default: 50,
    min: 1,
    max: 500,
};
const OFFSET: query::Number = query::Number {
    name: "offset",
    description: "users to skip, newest first",
    default: 0,
    min: 0,
    max: MAX_OFFSET,
};

/// The deepest page: an offset costs the database a scan of the rows it skips (about 0.2 s
/// per request at a million users for the largest), so it is bounded where pages stop being
/// something anyone reads one by one.
const MAX_OFFSET: u64 = 10_000;

/// The documented query parameters of `GET /api/users`.
pub fn list_query() -> Vec<Parameter> {
    [LIMIT, OFFSET]
        .iter()
        .map(|n| query_param(n.name, n.description, n.schema()))
        .collect()
}

pub async fn list(call: Call) -> HandlerResult {
    let params: ListParams = query::parse(&call.query)?;
    let limit = LIMIT.parse(params.limit.as_deref())?;
    let offset = OFFSET.parse(params.offset.as_deref())?;
    let state = &call.state;
    let (users, total) = Query::list_users(state.db(), limit, offset).await?;
    let body = UserListBody {
        users: users.into_iter().map(UserDto::from).collect(),
        total,
        limit,
        offset,
        server_id: state.server_id().to_owned(),
    };
    Ok(json(StatusCode::OK, &body))
}

pub async fn create(call: Call) -> HandlerResult {
    let state = call.state;
    let input: UserInput = call.body.json(state.body_limit()).await?;
    let row = Mutation::new_user_row(input.try_into()?, state.server_id());
    let user = match state.creates() {
        Some(creates) => creates.create(row).await,
        None => Mutation::insert_user(state.db(), row).await,
    }
    .map_err(write_error)?;
    let location = format!("/api/users/{}", user.id);
    let mut response = one_user(StatusCode::CREATED, user, state.server_id());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn get(call: Call) -> HandlerResult {
    let id = user_id(&call)?;
    let user = Query::find_user(call.state.db(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(one_user(StatusCode::OK, user, call.state.server_id()))
}

pub async fn replace(call: Call) -> HandlerResult {
    let id = user_id(&call)?;
    let state = call.state;
    let input: UserInput = call.body.json(state.body_limit()).await?;
    let user = Mutation::update_user(state.db(), id, input.try_into()?)
        .await
        .map_err(|err| match err {
            WriteError::NotFound => not_found(id),
            other => write_error(other),
        })?;
    Ok(one_user(StatusCode::OK, user, state.server_id()))
}

pub async fn delete(call: Call) -> HandlerResult {
    let id = user_id(&call)?;
    if Mutation::delete_user(call.state.db(), id).await? {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(not_found(id))
    }
}

fn one_user(
    status: StatusCode,
    user: entity::users::Model,
    server_id: &str,
) -> warp::reply::Response {
    json(
        status,
        &UserBody {
            user: user.into(),
            server_id: server_id.to_owned(),
        },
    )
}

/// The `:id` of the path, which must be a UUID in its hyphenated form (the one the API
/// hands out, and the only one its document allows).
fn user_id(call: &Call) -> Result<Uuid, ApiError> {
    let raw = call.param.as_deref().unwrap_or_default();
    let hyphenated = raw.len() == 36;
    Uuid::parse_str(raw)
        .ok()
        .filter(|_| hyphenated)
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_id",
            message: format!(
                "{} is not a valid user id (a UUID such as \
                 0190c3a4-0000-7000-8000-000000000000)",
                echo(raw)
            ),
        })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no user with id {id}"))
}

fn write_error(err: WriteError) -> ApiError {
    match err {
        WriteError::EmailTaken => {
            ApiError::Conflict("a user with this email already exists".into())
        }
        WriteError::NotFound => ApiError::NotFound("no such user".into()),
        WriteError::Db(err) => err.into(),
    }
}
