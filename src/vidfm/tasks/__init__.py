"""The glue of each method: batch -> {"loss", named parts}. The only place where models, teachers, masks and
objectives meet."""
