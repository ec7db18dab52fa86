-- Nothing looks events up by object: ordering lives in stripe_objects. The index only
-- cost every insert and every state change of an event (state changes are not HOT
-- updates, because the pending index's predicate reads state).
DROP INDEX stripe_events_object_idx;
