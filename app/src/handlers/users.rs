//! `/api/users`: list, create, read, replace, delete.

use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Call, HandlerResult};
use crate::domain::{Email, Invalid, NewUser, UserName};
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

/// Body of `POST /api/users` and `PUT /api/users/:id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// 1-100 characters.
    pub name: Option<String>,
    /// A plausible address, at most 254 characters; unique regardless of letter case.
    pub email: Option<String>,
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
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1-500, default 50.
    pub limit: Option<String>,
    /// Default 0.
    pub offset: Option<String>,
}

pub async fn list(call: Call) -> HandlerResult {
    let params: ListParams = query::parse(&call.query)?;
    let limit = query::number("limit", params.limit.as_deref(), 50, 1, 500)?;
    let offset = query::number("offset", params.offset.as_deref(), 0, 0, i64::MAX as u64)?;
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
    let user = Mutation::create_user(state.db(), input.try_into()?, state.server_id())
        .await
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

/// The `:id` of the path, which must be a UUID.
fn user_id(call: &Call) -> Result<Uuid, ApiError> {
    let raw = call.param.as_deref().unwrap_or_default();
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
        code: "invalid_id",
        message: format!("{raw:?} is not a valid user id (a UUID)"),
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
