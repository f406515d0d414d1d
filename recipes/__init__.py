"""The recipes that ship with BOLT (installed as the package bolt_recipes): JSON files that
`bolt run --config`, `bolt refresh --config`, `bolt serve --config` and bolt.load_recipe read."""
