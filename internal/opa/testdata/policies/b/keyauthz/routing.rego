package keyauthz.routing

# built_index is materialised by the engine into data.keyauthz.routes.index at load.
built_index := {r.path: r | some r in data.keyauthz.routes.table}
