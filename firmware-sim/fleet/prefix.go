package fleet

import (
	"context"
	"net/http"
)

// hubTopicPrefix is the MQTT topic prefix the hub reports in GET /api/v1/cluster
// ("topic_prefix"), or "" when it reports none (an older hub: the default prefix).
func hubTopicPrefix(ctx context.Context, h *hubClient) string {
	var st struct {
		TopicPrefix string `json:"topic_prefix"`
	}
	if code, err := h.do(ctx, http.MethodGet, "/api/v1/cluster", nil, &st); err != nil || code != http.StatusOK {
		return ""
	}
	return st.TopicPrefix
}
