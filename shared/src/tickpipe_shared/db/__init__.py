"""The database: schema (versioned migrations), connections and the queries readers share."""
