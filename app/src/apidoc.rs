//! How a route describes itself in the OpenAPI document beyond its method and path.
//!
//! A route names its parameters, its body, and the answers only it gives; what it shares with
//! others (400 for bad input, 401 for a missing key, 413/415 for bodies) follows from its shape.

use utoipa::ToSchema;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required};

/// Named schemas the document must carry, collected while routes are described.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// A schema: registers what it needs in `Schemas` and returns how to refer to it.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

/// The query parameters of a route, with their descriptions.
pub type ParamsFn = fn() -> Vec<Parameter>;

/// What the OpenAPI document says about a route beyond its method, path, summary and auth.
pub struct Doc {
    /// The schema of the path's `:param` segment (a string when absent).
    pub param: Option<SchemaFn>,
    pub query: Option<ParamsFn>,
    /// The JSON request body.
    pub body: Option<SchemaFn>,
    /// Successful answers and the errors particular to this route.
    pub answers: &'static [Answer],
}

/// One documented answer.
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
    /// A response header worth naming: (name, description).
    pub header: Option<(&'static str, &'static str)>,
    /// Operations this answer leads to: (operation id, its `id` parameter's runtime
    /// expression), so clients and fuzzers can follow a created resource.
    pub links: &'static [(&'static str, &'static str)],
}

/// What an answer's body is.
pub enum Content {
    Empty,
    Json(SchemaFn),
    /// Not described by a schema: the content type alone.
    Other(&'static str),
}

impl Answer {
    pub const fn json(status: u16, description: &'static str, schema: SchemaFn) -> Self {
        Self {
            status,
            description,
            content: Content::Json(schema),
            header: None,
            links: &[],
        }
    }

    pub const fn other(status: u16, description: &'static str, content_type: &'static str) -> Self {
        Self {
            status,
            description,
            content: Content::Other(content_type),
            header: None,
            links: &[],
        }
    }

    pub const fn empty(status: u16, description: &'static str) -> Self {
        Self {
            status,
            description,
            content: Content::Empty,
            header: None,
            links: &[],
        }
    }

    /// An error answer: the common error envelope.
    pub const fn error(status: u16, description: &'static str) -> Self {
        Self::json(
            status,
            description,
            schema::<crate::error::ErrorBody<'static>>,
        )
    }

    pub const fn with_header(mut self, name: &'static str, description: &'static str) -> Self {
        self.header = Some((name, description));
        self
    }

    pub const fn with_links(mut self, links: &'static [(&'static str, &'static str)]) -> Self {
        self.links = links;
        self
    }
}

/// `T` as a named schema (registered with everything it refers to), by reference.
pub fn schema<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(T::name()).into()
}

/// `schema` registered as `name`, by reference.
pub fn named(schemas: &mut Schemas, name: &str, schema: impl Into<Schema>) -> RefOr<Schema> {
    schemas.push((name.to_owned(), RefOr::T(schema.into())));
    Ref::from_schema_name(name).into()
}

/// A UUID in its hyphenated form (the only one the API takes), written out in place.
pub fn uuid(_: &mut Schemas) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

/// An optional query parameter.
pub fn query_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}
