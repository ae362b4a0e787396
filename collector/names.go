package collector

// Namespace is the prefix of every metric the sidecar exposes about the model it watches.
const Namespace = "modelmon"

// OtherValue replaces a label value once a traffic-derived label (model, feature,
// class) has reached its cap, so the number of series stays bounded.
const OtherValue = "__other__"

// Names of the metrics the sidecar exposes. Dashboards and rules refer to these.
const (
	RequestsTotal            = "modelmon_requests_total"
	PassthroughRequestsTotal = "modelmon_passthrough_requests_total"
	PassthroughErrorsTotal   = "modelmon_passthrough_errors_total"
	UpstreamRetriesTotal     = "modelmon_upstream_retries_total"
	PredictionsTotal         = "modelmon_predictions_total"
	PredictionErrorsTotal    = "modelmon_prediction_errors_total"
	RequestsInFlight         = "modelmon_requests_in_flight"
	RequestSizeBytes         = "modelmon_request_size_bytes"
	ResponseSizeBytes        = "modelmon_response_size_bytes"
	PredictionDuration       = "modelmon_prediction_duration_seconds"
	PredictionFirstByte      = "modelmon_prediction_time_to_first_byte_seconds"
	ProxyOverhead            = "modelmon_proxy_overhead_seconds"
	CaptureDroppedTotal      = "modelmon_capture_dropped_total"
	CaptureQueueLength       = "modelmon_capture_queue_length"
	CaptureQueueBytes        = "modelmon_capture_queue_bytes"
	CaptureQueueCapacity     = "modelmon_capture_queue_capacity"
	PayloadsParsedTotal      = "modelmon_payloads_parsed_total"
	PayloadErrorsTotal       = "modelmon_payload_errors_total"
	FeedbackReward           = "modelmon_feedback_reward"
	GenerationsTotal         = "modelmon_generations_total"
	GenerationTokensTotal    = "modelmon_generation_tokens_total"
	GenerationTimePerToken   = "modelmon_generation_time_per_output_token_seconds"
	FeatureValuesInvalid     = "modelmon_feature_values_invalid_total"
	LabelOverflowTotal       = "modelmon_label_overflow_total"
	ObservationsReceived     = "modelmon_observations_received_total"
	ObservationsRejected     = "modelmon_observations_rejected_total"
	ModelInfoMetric          = "modelmon_model_info"
	FeatureImportance        = "modelmon_feature_importance"

	FeatureBinTotal          = "modelmon_feature_bin_total"
	FeatureReferenceRatio    = "modelmon_feature_reference_ratio"
	FeatureReferenceValues   = "modelmon_feature_reference_values"
	FeatureReferenceInfo     = "modelmon_feature_reference_info"
	FeatureDriftPSI          = "modelmon_feature_drift_psi"
	FeatureDriftJS           = "modelmon_feature_drift_js_distance"
	FeatureDriftHellinger    = "modelmon_feature_drift_hellinger_distance"
	FeatureDriftKS           = "modelmon_feature_drift_ks_statistic"
	FeatureDriftKSPValue     = "modelmon_feature_drift_ks_p_value"
	FeatureDriftWasserstein  = "modelmon_feature_drift_wasserstein_normed"
	FeatureDriftChiSqPValue  = "modelmon_feature_drift_chisquare_p_value"
	FeatureDriftZPValue      = "modelmon_feature_drift_z_p_value"
	FeatureDriftMissingDelta = "modelmon_feature_drift_missing_rate_change"
	FeatureDriftMissingP     = "modelmon_feature_drift_missing_p_value"
	FeatureDriftThreshold    = "modelmon_feature_drift_threshold"
	FeatureDrifted           = "modelmon_feature_drifted"
	FeatureDriftWindowValues = "modelmon_feature_drift_window_values"
	FeatureDriftDetectable   = "modelmon_feature_drift_detectable_psi"
	DatasetDriftShare        = "modelmon_dataset_drift_share"
	DatasetDrifted           = "modelmon_dataset_drifted"
	ModelDrifted             = "modelmon_model_drifted"
	ModelDriftThreshold      = "modelmon_model_drift_threshold"
	ModelDriftFeatures       = "modelmon_model_drift_features"
	DriftReferenceInfo       = "modelmon_drift_reference_info"

	PredictionClassTotal         = "modelmon_prediction_class_total"
	PredictionScore              = "modelmon_prediction_score"
	PredictionClassProbability   = "modelmon_prediction_class_probability"
	PredictionConfidenceBinTotal = "modelmon_prediction_confidence_predictions_total"
	PredictionOutcomeTotal       = "modelmon_prediction_outcome_total"
	PredictionCorrectTotal       = "modelmon_prediction_correct_total"

	ProbabilityOutcomesTotal = "modelmon_prediction_probability_outcomes_total"
	BrierScoreTotal          = "modelmon_prediction_brier_score_total"
	LogLossTotal             = "modelmon_prediction_log_loss_total"
	ConfidenceOutcomesTotal  = "modelmon_prediction_confidence_outcomes_total"
	ConfidenceCorrectTotal   = "modelmon_prediction_confidence_correct_total"
	ConfidenceTotal          = "modelmon_prediction_confidence_total"
	LabelsMatchedTotal       = "modelmon_labels_matched_total"
	RegressionOutcomesTotal  = "modelmon_prediction_regression_outcomes_total"
	AbsoluteErrorTotal       = "modelmon_prediction_absolute_error_total"
	SquaredErrorTotal        = "modelmon_prediction_squared_error_total"
	// Not modelmon_prediction_absolute_error: OpenMetrics names the
	// family of the counter AbsoluteErrorTotal so (a counter's family
	// drops _total), and one exposition holds one family of a name.
	PredictionErrorMagnitude = "modelmon_prediction_error_magnitude"
	LabelValueOffset         = "modelmon_label_value_offset"
	LabelDeviationTotal      = "modelmon_label_deviation_total"
	LabelDeviationSquared    = "modelmon_label_deviation_squared_total"
	SegmentLabelsMatched     = "modelmon_segment_labels_matched_total"
	SegmentRegOutcomes       = "modelmon_segment_prediction_regression_outcomes_total"
	SegmentCorrectTotal      = "modelmon_segment_prediction_correct_total"
	SegmentAbsoluteError     = "modelmon_segment_prediction_absolute_error_total"
	SegmentSquaredError      = "modelmon_segment_prediction_squared_error_total"
	SegmentErrorMagnitude    = "modelmon_segment_prediction_error_magnitude"
	SegmentClassPredictions  = "modelmon_segment_class_predictions_total"
	SegmentClassLabels       = "modelmon_segment_class_labels_total"
	SegmentClassCorrect      = "modelmon_segment_class_correct_total"
	LabelDelay               = "modelmon_label_delay_seconds"
	LabelsRejectedTotal      = "modelmon_labels_rejected_total"
	LabelsTotal              = "modelmon_labels_total"
	PendingPredictions       = "modelmon_pending_predictions"
	HeldLabels               = "modelmon_held_labels"
	PendingRemovedTotal      = "modelmon_pending_predictions_removed_total"
	LabelPeerRequestsTotal   = "modelmon_label_peer_requests_total"
	LabelsForwardedTotal     = "modelmon_labels_forwarded_total"
	LabelPeers               = "modelmon_label_peers"

	HeldLabelsPeerUnreachable  = "modelmon_held_labels_peer_unreachable"
	LabelsPeerUnreachableTotal = "modelmon_labels_peer_unreachable_total"

	PayloadLogSentTotal     = "modelmon_payload_log_events_sent_total"
	PayloadLogDroppedTotal  = "modelmon_payload_log_events_dropped_total"
	PayloadLogFailuresTotal = "modelmon_payload_log_send_failures_total"
	PayloadLogSpooledTotal  = "modelmon_payload_log_events_spooled_total"
	PayloadLogSplitsTotal   = "modelmon_payload_log_batch_splits_total"
	PayloadLogDuration      = "modelmon_payload_log_delivery_duration_seconds"
	PayloadLogQueueBytes    = "modelmon_payload_log_queue_bytes"
	PayloadLogQueueMaxBytes = "modelmon_payload_log_queue_max_bytes"
	PayloadLogSpoolBytes    = "modelmon_payload_log_spool_bytes"
	PayloadLogSpoolMaxBytes = "modelmon_payload_log_spool_max_bytes"

	PayloadLogBatchMaxEvents = "modelmon_payload_log_batch_max_events"

	ShadowRequestsTotal           = "modelmon_shadow_requests_total"
	ShadowErrorsTotal             = "modelmon_shadow_errors_total"
	ShadowRetriesTotal            = "modelmon_shadow_retries_total"
	ShadowDroppedTotal            = "modelmon_shadow_dropped_total"
	ShadowDuration                = "modelmon_shadow_duration_seconds"
	ShadowFirstByte               = "modelmon_shadow_time_to_first_byte_seconds"
	ShadowTimePerToken            = "modelmon_shadow_time_per_output_token_seconds"
	ShadowPredictionsTotal        = "modelmon_shadow_predictions_total"
	ShadowDisagreementsTotal      = "modelmon_shadow_disagreements_total"
	ShadowAbsoluteDifferenceTotal = "modelmon_shadow_absolute_difference_total"
	ShadowSquaredDifferenceTotal  = "modelmon_shadow_squared_difference_total"
	ShadowLabelsMatchedTotal      = "modelmon_shadow_labels_matched_total"
	ShadowRegressionOutcomesTotal = "modelmon_shadow_prediction_regression_outcomes_total"
	ShadowCorrectTotal            = "modelmon_shadow_prediction_correct_total"
	ShadowDiscordantTotal         = "modelmon_shadow_prediction_discordant_total"
	ShadowAbsoluteErrorTotal      = "modelmon_shadow_prediction_absolute_error_total"
	ShadowSquaredErrorTotal       = "modelmon_shadow_prediction_squared_error_total"
	ShadowPendingPredictions      = "modelmon_shadow_pending_predictions"
	ShadowClassPairsTotal         = "modelmon_shadow_class_pairs_total"
)

// NoClass is the class label value of a side that predicted no class, in
// modelmon_shadow_class_pairs_total.
const NoClass = "__none__"

// Values of the source label of the shadow's label metrics: which of the
// two answered.
const (
	SourceModel  = "model"
	SourceShadow = "shadow"
)

// Reasons a proxied prediction failed, the values of the reason label of
// modelmon_prediction_errors_total.
const (
	ErrorTimeout         = "timeout"
	ErrorUpstream4xx     = "upstream_4xx"
	ErrorUpstream5xx     = "upstream_5xx"
	ErrorConnection      = "connection"
	ErrorInvalidResponse = "invalid_response"
)

// ErrorReasons lists every reason label value of modelmon_prediction_errors_total
// and modelmon_passthrough_errors_total.
var ErrorReasons = []string{ErrorTimeout, ErrorUpstream4xx, ErrorUpstream5xx, ErrorConnection, ErrorInvalidResponse}

// Reasons a shadow request failed beyond ErrorReasons, values of the reason
// label of modelmon_shadow_errors_total.
const (
	// ShadowInvalidPayload: the shadow's answer gave no predictions.
	ShadowInvalidPayload = "invalid_payload"
	// ShadowShapeMismatch: the shadow's answer gave another number of
	// predictions than the model's, or one its request's shape does not
	// match.
	ShadowShapeMismatch = "shape_mismatch"
)

// ShadowErrorReasons lists every reason label value of
// modelmon_shadow_errors_total.
var ShadowErrorReasons = append(append([]string(nil), ErrorReasons...), ShadowInvalidPayload, ShadowShapeMismatch)

// Reasons a capture was dropped before parsing, the values of the reason label
// of modelmon_capture_dropped_total.
const (
	DropQueueFull    = "queue_full"
	DropBodyTooLarge = "body_too_large"
)

// DropReasons lists every reason label value of modelmon_capture_dropped_total.
var DropReasons = []string{DropQueueFull, DropBodyTooLarge}

// Roles of a feature in its reference profile, the values of the role label
// of modelmon_feature_reference_info. The prediction is named after its
// column in the training data, or __prediction__ in a profile the sidecar
// learned: queries that single it out (the prediction's drift, the inputs'
// drift without it) select it by this label, not by its name.
const (
	// RoleInput: an input of the model.
	RoleInput = "input"
	// RolePrediction: the model's output.
	RolePrediction = "prediction"
	// RoleMultivariate: the multivariate drift's reconstruction error
	// (__reconstruction_error__), derived from the inputs.
	RoleMultivariate = "multivariate"
)

// Reasons a feature value is invalid, the values of the reason label of
// modelmon_feature_values_invalid_total.
const (
	InvalidMissing        = "missing"
	InvalidNaN            = "nan"
	InvalidInf            = "inf"
	InvalidOutOfRange     = "out_of_range"
	InvalidUnseenCategory = "unseen_category"
	// InvalidUnnamedClass: a classifier's prediction that is a vector of
	// probabilities or a class index, for a drift reference whose
	// prediction is categorical, without models[].classes to name its
	// classes: not counted into the window rather than guessed by position.
	InvalidUnnamedClass = "unnamed_class"
)
