package server

import (
	"context"
	"sync"

	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/server/keys"
)

// removals revokes, in the store, the tokens of partner keys that a reload
// removed. While a key is absent its tokens are refused anyway (the access
// table's "key no longer configured" rule); revoking them in the store
// makes that final, so a key that comes back does not bring its old
// tokens back. A revocation that fails is retried at the next change.
type removals struct {
	mu      sync.Mutex
	pending map[string]bool
}

// KeysChanged takes a change of the partner key set (keys.Registry's
// OnChange): it is recorded in the audit trail, and the tokens of every
// removed key are revoked in the store, for every instance sharing it,
// unless Config.KeepRemovedKeyTokens.
func (s *Server) KeysChanged(ch keys.Change) {
	ctx := context.Background()
	// No request waits on these events: a failure is counted and logged.
	_ = s.trail.Record(ctx, s.keyReloadEvent(ch.Generation, ch.Added, ch.Removed))
	if s.cfg.KeepRemovedKeyTokens {
		return
	}
	s.removed.mu.Lock()
	defer s.removed.mu.Unlock()
	if s.removed.pending == nil {
		s.removed.pending = map[string]bool{}
	}
	for _, id := range ch.Removed {
		s.removed.pending[id] = true
	}
	for id := range s.removed.pending {
		sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		epoch, err := s.cfg.Store.RevokeKey(sctx, id)
		cancel()
		e := audit.Event{Time: s.cfg.Now(), Event: audit.Revoke, Outcome: audit.OK, By: audit.ByKeyRemoval, Scope: audit.ScopeKey, KeyID: id, Epoch: epoch, Generation: ch.Generation}
		if err != nil {
			s.log.Error("could not revoke the tokens of a removed key; they stay refused while it is absent, and the next key change retries",
				"key_id", id, "err", err)
			ee, _ := toError(err)
			e.Outcome = string(ee.Code)
			_ = s.trail.Record(ctx, e)
			continue
		}
		delete(s.removed.pending, id)
		s.log.Info("revoked every token of a removed key", "key_id", id, "epoch", epoch, "generation", ch.Generation)
		_ = s.trail.Record(ctx, e)
	}
}
