package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUnreachableErrors: the errors etcd gives when it cannot answer (no quorum, no leader, a
// member timing out, the connection gone) are "unreachable" (a 503); a fault of ours or a
// refusal of the request is not.
func TestUnreachableErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"our deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection refused"), true},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "deadline"), true},
		// etcd 3.4 with two of three members down answered this (test/cluster saw it as a 500).
		{"grpc unknown deadline", status.Error(codes.Unknown, "context deadline exceeded"), true},
		{"server timeout", rpctypes.ErrGRPCTimeout, true},
		{"timeout due to leader fail", rpctypes.ErrGRPCTimeoutDueToLeaderFail, true},
		{"no leader", rpctypes.ErrGRPCNoLeader, true},
		{"leader changed", rpctypes.ErrGRPCLeaderChanged, true},
		{"too many ops", rpctypes.ErrGRPCTooManyOps, false},
		{"request too large", rpctypes.ErrGRPCRequestTooLarge, false},
		{"grpc unknown other", status.Error(codes.Unknown, "something else"), false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unreachable(tt.err); got != tt.want {
				t.Errorf("unreachable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
