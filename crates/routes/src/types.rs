//! The column types routes can write, and their names: as written in a routes file
//! ([`ColumnType::parse_declared`]), as PostgreSQL's catalog spells them in `pg_type.typname`
//! ([`ColumnType::from_pg_type_name`]), and as a cast in SQL ([`ColumnType::sql_name`]).
//!
//! Length and precision modifiers (`varchar(20)`, `numeric(10,2)`) are enforced by the database
//! when the row is written (a too-long string is a class 22 error, which the sinker isolates and
//! dead-letters as `database_rejected`). What they do to a value that fits (numeric rounded to
//! its scale, timestamps to their precision, char(n) blank-padded) is a [`Modifier`], from the
//! catalog: write-combining needs it to compare keys and versions as the stored values compare.

use std::fmt;

/// A scalar column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// text, varchar / character varying, char / character / bpchar.
    Text,
    Uuid,
    /// smallint / int2.
    Int2,
    /// integer / int / int4.
    Int4,
    /// bigint / int8.
    Int8,
    /// numeric / decimal.
    Numeric,
    /// real / float4.
    Float4,
    /// double precision / float8 / float.
    Float8,
    /// boolean / bool.
    Bool,
    /// timestamptz / timestamp with time zone.
    Timestamptz,
    /// timestamp / timestamp without time zone.
    Timestamp,
    Date,
    Json,
    Jsonb,
}

/// A column type routes can write: a scalar, or a one-dimensional array of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Scalar(Scalar),
    Array(Scalar),
}

/// Why a type name is not one routes can write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or unsupported type {name:?}: routes write {supported}")]
pub struct UnknownType {
    pub name: String,
    supported: &'static str,
}

impl UnknownType {
    fn new(name: &str) -> Self {
        Self { name: name.to_owned(), supported: SUPPORTED }
    }
}

/// The supported type names, for error messages.
pub const SUPPORTED: &str = "text, varchar, char, uuid, smallint, integer, bigint, numeric, real, \
     double precision, boolean, timestamptz, timestamp, date, json, jsonb, and one-dimensional arrays of these \
     (e.g. integer[])";

impl Scalar {
    pub const ALL: [Scalar; 14] = [
        Self::Text,
        Self::Uuid,
        Self::Int2,
        Self::Int4,
        Self::Int8,
        Self::Numeric,
        Self::Float4,
        Self::Float8,
        Self::Bool,
        Self::Timestamptz,
        Self::Timestamp,
        Self::Date,
        Self::Json,
        Self::Jsonb,
    ];

    /// The canonical SQL name, as used in casts (`x::integer`).
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Uuid => "uuid",
            Self::Int2 => "smallint",
            Self::Int4 => "integer",
            Self::Int8 => "bigint",
            Self::Numeric => "numeric",
            Self::Float4 => "real",
            Self::Float8 => "double precision",
            Self::Bool => "boolean",
            Self::Timestamptz => "timestamp with time zone",
            Self::Timestamp => "timestamp without time zone",
            Self::Date => "date",
            Self::Json => "json",
            Self::Jsonb => "jsonb",
        }
    }

    /// A name as written in SQL or a routes file (lowercase, single spaces, no modifier).
    fn from_sql_name(name: &str) -> Option<Self> {
        Some(match name {
            "text" | "varchar" | "character varying" | "char" | "character" | "bpchar" => Self::Text,
            "uuid" => Self::Uuid,
            "smallint" | "int2" => Self::Int2,
            "integer" | "int" | "int4" => Self::Int4,
            "bigint" | "int8" => Self::Int8,
            "numeric" | "decimal" => Self::Numeric,
            "real" | "float4" => Self::Float4,
            "double precision" | "float8" | "float" => Self::Float8,
            "boolean" | "bool" => Self::Bool,
            "timestamptz" | "timestamp with time zone" => Self::Timestamptz,
            "timestamp" | "timestamp without time zone" => Self::Timestamp,
            "date" => Self::Date,
            "json" => Self::Json,
            "jsonb" => Self::Jsonb,
            _ => return None,
        })
    }

    /// A `pg_type.typname` of a scalar type.
    fn from_typname(typname: &str) -> Option<Self> {
        Some(match typname {
            "text" | "varchar" | "bpchar" => Self::Text,
            "uuid" => Self::Uuid,
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "numeric" => Self::Numeric,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "bool" => Self::Bool,
            "timestamptz" => Self::Timestamptz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "json" => Self::Json,
            "jsonb" => Self::Jsonb,
            _ => return None,
        })
    }

    /// Whether a value of this type can order versions. json has no ordering, and jsonb's
    /// ordering is not one anybody versions by.
    pub fn is_orderable(self) -> bool {
        !matches!(self, Self::Json | Self::Jsonb)
    }

    /// Whether write-combining can tell when two values of this type are the same key
    /// (see `compare.rs`). json has no equality at all; jsonb's is structural and not modelled.
    pub fn can_be_key(self) -> bool {
        !matches!(self, Self::Json | Self::Jsonb)
    }
}

impl ColumnType {
    pub const TEXT: Self = Self::Scalar(Scalar::Text);

    /// A type named in a routes file: SQL names (`integer`, `double precision`,
    /// `timestamp with time zone`, `varchar(20)`, `integer[]`), case-insensitive, or
    /// `pg_type` names (`int4`, `_int4`).
    pub fn parse_declared(name: &str) -> Result<Self, UnknownType> {
        let normalized = name.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        if let Ok(ty) = Self::from_pg_type_name(&normalized) {
            return Ok(ty);
        }
        let (base, array) = match normalized.strip_suffix("[]") {
            Some(base) => (base.trim_end(), true),
            None => (normalized.as_str(), false),
        };
        let base = strip_modifier(base).ok_or_else(|| UnknownType::new(name))?;
        let scalar = Scalar::from_sql_name(base).ok_or_else(|| UnknownType::new(name))?;
        Ok(if array { Self::Array(scalar) } else { Self::Scalar(scalar) })
    }

    /// A type as `pg_type.typname` names it: `int4`, `varchar`, `bpchar`, `timestamptz`, and
    /// for arrays the element's name with a leading underscore (`_int4`). Domains and other
    /// types are unknown: resolve a domain to its base type first.
    pub fn from_pg_type_name(typname: &str) -> Result<Self, UnknownType> {
        if let Some(element) = typname.strip_prefix('_') {
            return Scalar::from_typname(element).map(Self::Array).ok_or_else(|| UnknownType::new(typname));
        }
        Scalar::from_typname(typname).map(Self::Scalar).ok_or_else(|| UnknownType::new(typname))
    }

    /// The canonical SQL name for casts: `integer`, `bigint`, `timestamp with time zone`,
    /// `integer[]`.
    pub fn sql_name(self) -> String {
        match self {
            Self::Scalar(s) => s.sql_name().to_owned(),
            Self::Array(s) => format!("{}[]", s.sql_name()),
        }
    }

    /// Whether a `version` column may have this type: scalars other than json and jsonb.
    pub fn is_orderable(self) -> bool {
        match self {
            Self::Scalar(s) => s.is_orderable(),
            Self::Array(_) => false,
        }
    }

    /// Whether a key column may have this type: scalars other than json and jsonb.
    pub fn can_be_key(self) -> bool {
        match self {
            Self::Scalar(s) => s.can_be_key(),
            Self::Array(_) => false,
        }
    }

    /// The scalar itself, or the array's element type.
    pub fn scalar(self) -> Scalar {
        match self {
            Self::Scalar(s) | Self::Array(s) => s,
        }
    }
}

/// What a column's type and type modifier (`pg_attribute.atttypmod`) do to a value written into
/// it, as far as comparing keys and versions goes (see `compare.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Modifier {
    /// The value is stored as written.
    #[default]
    None,
    /// `char(n)` (`bpchar`): trailing blanks are insignificant.
    BlankPadded,
    /// `varchar(n)`: a value longer than n characters whose excess is blanks is cut to n.
    MaxLength(u32),
    /// `numeric(p, s)`: rounded to s digits after the point (half away from zero; s may be
    /// negative).
    Scale(i32),
    /// `timestamp(p)`, `timestamptz(p)`: rounded to p digits of fractional seconds.
    FractionalDigits(u32),
}

impl Modifier {
    /// The modifier of a scalar column from its `pg_type.typname` (a domain: its base type's)
    /// and `atttypmod` (a domain: `typtypmod`; -1 when none). Arrays have none: they are never
    /// keys or versions.
    pub fn from_catalog(typname: &str, typmod: i32) -> Self {
        // VARHDRSZ: PostgreSQL stores length modifiers plus 4.
        const HEADER: i32 = 4;
        match typname {
            "bpchar" => Self::BlankPadded,
            "varchar" if typmod >= HEADER => Self::MaxLength((typmod - HEADER) as u32),
            "numeric" if typmod >= HEADER => {
                // ((precision << 16) | scale) + 4, the scale an 11-bit signed number.
                let scale = (typmod - HEADER) & 0x7ff;
                Self::Scale(if scale & 0x400 != 0 { scale - 0x800 } else { scale })
            }
            "timestamp" | "timestamptz" if (0..6).contains(&typmod) => Self::FractionalDigits(typmod as u32),
            _ => Self::None,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scalar(s) => f.write_str(s.sql_name()),
            Self::Array(s) => write!(f, "{}[]", s.sql_name()),
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// `varchar(20)` -> `varchar`, `numeric(10, 2)` -> `numeric`: a length or precision modifier is
/// allowed after the names that take one (and ignored: the database enforces it). None for a
/// malformed modifier.
fn strip_modifier(name: &str) -> Option<&str> {
    let Some(open) = name.find('(') else {
        return Some(name);
    };
    let base = name[..open].trim_end();
    let args = name[open + 1..].strip_suffix(')')?;
    let takes_modifier =
        matches!(base, "varchar" | "character varying" | "char" | "character" | "bpchar" | "numeric" | "decimal");
    let well_formed = args.split(',').all(|a| !a.trim().is_empty() && a.trim().bytes().all(|b| b.is_ascii_digit()));
    (takes_modifier && well_formed && args.split(',').count() <= 2).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_names_parse_to_their_types() {
        let cases = [
            ("text", ColumnType::Scalar(Scalar::Text)),
            ("VARCHAR", ColumnType::Scalar(Scalar::Text)),
            ("character  varying", ColumnType::Scalar(Scalar::Text)),
            ("varchar(20)", ColumnType::Scalar(Scalar::Text)),
            ("char(3)", ColumnType::Scalar(Scalar::Text)),
            ("bpchar", ColumnType::Scalar(Scalar::Text)),
            ("uuid", ColumnType::Scalar(Scalar::Uuid)),
            ("smallint", ColumnType::Scalar(Scalar::Int2)),
            ("int2", ColumnType::Scalar(Scalar::Int2)),
            ("integer", ColumnType::Scalar(Scalar::Int4)),
            ("int", ColumnType::Scalar(Scalar::Int4)),
            ("bigint", ColumnType::Scalar(Scalar::Int8)),
            ("numeric(10, 2)", ColumnType::Scalar(Scalar::Numeric)),
            ("decimal", ColumnType::Scalar(Scalar::Numeric)),
            ("real", ColumnType::Scalar(Scalar::Float4)),
            ("double precision", ColumnType::Scalar(Scalar::Float8)),
            ("float8", ColumnType::Scalar(Scalar::Float8)),
            ("boolean", ColumnType::Scalar(Scalar::Bool)),
            ("timestamptz", ColumnType::Scalar(Scalar::Timestamptz)),
            ("timestamp with time zone", ColumnType::Scalar(Scalar::Timestamptz)),
            ("timestamp", ColumnType::Scalar(Scalar::Timestamp)),
            ("timestamp without time zone", ColumnType::Scalar(Scalar::Timestamp)),
            ("date", ColumnType::Scalar(Scalar::Date)),
            ("json", ColumnType::Scalar(Scalar::Json)),
            ("jsonb", ColumnType::Scalar(Scalar::Jsonb)),
            ("integer[]", ColumnType::Array(Scalar::Int4)),
            ("text []", ColumnType::Array(Scalar::Text)),
            ("_int4", ColumnType::Array(Scalar::Int4)),
            ("varchar(8)[]", ColumnType::Array(Scalar::Text)),
        ];
        for (name, ty) in cases {
            assert_eq!(ColumnType::parse_declared(name), Ok(ty), "{name}");
        }
    }

    #[test]
    fn unknown_and_multidimensional_types_are_refused() {
        for name in ["intger", "integer[][]", "money", "citext", "varchar(x)", "integer(3)", "", "numeric(1,2,3)"] {
            assert!(ColumnType::parse_declared(name).is_err(), "{name}");
        }
        let err = ColumnType::parse_declared("intger").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown or unsupported type \"intger\": routes write text, varchar, char, uuid, smallint, integer, \
             bigint, numeric, real, double precision, boolean, timestamptz, timestamp, date, json, jsonb, and \
             one-dimensional arrays of these (e.g. integer[])"
        );
    }

    #[test]
    fn catalog_names_map_to_types() {
        let cases = [
            ("int4", ColumnType::Scalar(Scalar::Int4)),
            ("_int4", ColumnType::Array(Scalar::Int4)),
            ("varchar", ColumnType::Scalar(Scalar::Text)),
            ("bpchar", ColumnType::Scalar(Scalar::Text)),
            ("_text", ColumnType::Array(Scalar::Text)),
            ("timestamptz", ColumnType::Scalar(Scalar::Timestamptz)),
            ("_timestamptz", ColumnType::Array(Scalar::Timestamptz)),
            ("float4", ColumnType::Scalar(Scalar::Float4)),
            ("jsonb", ColumnType::Scalar(Scalar::Jsonb)),
            ("_jsonb", ColumnType::Array(Scalar::Jsonb)),
        ];
        for (typname, ty) in cases {
            assert_eq!(ColumnType::from_pg_type_name(typname), Ok(ty), "{typname}");
        }
        for typname in ["integer", "int", "__int4", "citext", "money", "_money", "hstore"] {
            assert!(ColumnType::from_pg_type_name(typname).is_err(), "{typname}");
        }
        for s in Scalar::ALL {
            // Every scalar has a typname and its array one.
            let typname = ColumnType::Scalar(s).pg_type_name_for_tests();
            assert_eq!(ColumnType::from_pg_type_name(&typname), Ok(ColumnType::Scalar(s)));
            assert_eq!(ColumnType::from_pg_type_name(&format!("_{typname}")), Ok(ColumnType::Array(s)));
        }
    }

    #[test]
    fn sql_names_are_canonical_and_parse_back() {
        assert_eq!(ColumnType::Scalar(Scalar::Int4).sql_name(), "integer");
        assert_eq!(ColumnType::Scalar(Scalar::Int8).sql_name(), "bigint");
        assert_eq!(ColumnType::Scalar(Scalar::Timestamptz).sql_name(), "timestamp with time zone");
        assert_eq!(ColumnType::Array(Scalar::Int4).sql_name(), "integer[]");
        assert_eq!(ColumnType::Array(Scalar::Float8).to_string(), "double precision[]");
        for s in Scalar::ALL {
            for ty in [ColumnType::Scalar(s), ColumnType::Array(s)] {
                assert_eq!(ColumnType::parse_declared(&ty.sql_name()), Ok(ty));
            }
        }
    }

    #[test]
    fn orderable_and_key_types() {
        assert!(ColumnType::Scalar(Scalar::Bool).is_orderable());
        assert!(ColumnType::Scalar(Scalar::Timestamptz).is_orderable());
        assert!(ColumnType::Scalar(Scalar::Text).is_orderable());
        assert!(!ColumnType::Scalar(Scalar::Json).is_orderable());
        assert!(!ColumnType::Scalar(Scalar::Jsonb).is_orderable());
        assert!(!ColumnType::Array(Scalar::Int4).is_orderable());
        assert!(ColumnType::Scalar(Scalar::Uuid).can_be_key());
        assert!(!ColumnType::Scalar(Scalar::Jsonb).can_be_key());
        assert!(!ColumnType::Array(Scalar::Text).can_be_key());
    }

    impl ColumnType {
        fn pg_type_name_for_tests(self) -> String {
            let s = match self.scalar() {
                Scalar::Text => "text",
                Scalar::Uuid => "uuid",
                Scalar::Int2 => "int2",
                Scalar::Int4 => "int4",
                Scalar::Int8 => "int8",
                Scalar::Numeric => "numeric",
                Scalar::Float4 => "float4",
                Scalar::Float8 => "float8",
                Scalar::Bool => "bool",
                Scalar::Timestamptz => "timestamptz",
                Scalar::Timestamp => "timestamp",
                Scalar::Date => "date",
                Scalar::Json => "json",
                Scalar::Jsonb => "jsonb",
            };
            s.to_owned()
        }
    }

    #[test]
    fn modifiers_come_from_the_catalogs_typmod() {
        assert_eq!(Modifier::from_catalog("bpchar", 8), Modifier::BlankPadded);
        assert_eq!(Modifier::from_catalog("bpchar", -1), Modifier::BlankPadded);
        assert_eq!(Modifier::from_catalog("varchar", 6), Modifier::MaxLength(2));
        assert_eq!(Modifier::from_catalog("varchar", -1), Modifier::None);
        assert_eq!(Modifier::from_catalog("text", -1), Modifier::None);
        // numeric(10,2): (10 << 16 | 2) + 4; numeric(2,-3): the scale is 11-bit signed.
        assert_eq!(Modifier::from_catalog("numeric", (10 << 16 | 2) + 4), Modifier::Scale(2));
        assert_eq!(Modifier::from_catalog("numeric", (2 << 16 | (-3i32 & 0x7ff)) + 4), Modifier::Scale(-3));
        assert_eq!(Modifier::from_catalog("numeric", -1), Modifier::None);
        assert_eq!(Modifier::from_catalog("timestamptz", 3), Modifier::FractionalDigits(3));
        assert_eq!(Modifier::from_catalog("timestamp", 0), Modifier::FractionalDigits(0));
        assert_eq!(Modifier::from_catalog("timestamptz", 6), Modifier::None, "microseconds are stored anyway");
        assert_eq!(Modifier::from_catalog("timestamptz", -1), Modifier::None);
        assert_eq!(Modifier::from_catalog("int4", -1), Modifier::None);
    }
}
