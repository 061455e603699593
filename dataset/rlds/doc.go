// Package rlds reads a TFDS-prepared RLDS folder (the format of the Open
// X-Embodiment data sets) as a dataset.Source with one sample per step,
// and registers the scheme "rlds:DIR" with dataset.Open. The folder holds
//
//	features.json        the TFDS FeaturesDict of an episode
//	dataset_info.json    the data set's name and splits (optional here)
//	NAME-SPLIT.tfrecord-NNNNN-of-MMMMM   the shards
//
// Each TFRecord record is one episode, a tf.train.Example whose step
// features are flattened under "steps/...": "steps/observation/image" is a
// bytes list of one encoded image per step, "steps/action" a float list of
// T·A values, "steps/language_instruction" a bytes list of T texts.
// ParseFeatures reads features.json into the list of feature paths with
// their kind (image, tensor, text), dtype and shape, which says how to cut
// each list into steps.
//
// # Samples
//
// Step t of episode e is one sample with Episode = e (the episode's
// position over the sorted shards), Step = t and EpisodeLen = T; its
// image, instruction (Sample.Text), action and state come from the
// features named by OpenOptions.ImageKey, Instruction, ActionKey and
// State, relative to "steps/" or absolute; each defaults to the first of
// the Open X-Embodiment names present in features.json:
//
//	image        observation/image, observation/rgb, observation/image_0,
//	             observation/agentview_rgb, observation/front_rgb
//	instruction  language_instruction, observation/natural_language_instruction
//	action       action
//	state        observation/state, observation/proprio, observation/robot_state
//
// An action that is a FeaturesDict (as in RT-1's world_vector,
// rotation_delta, gripper_closedness_action, …) is the concatenation of its
// tensors in sorted path order.
//
// # Index and cost
//
// Each shard is scanned once for the offset, length and number of steps of
// every record; the index is kept beside the shard or in a cache folder and
// reused while the shard's size and modification time are unchanged (see
// package shardidx). The first step Sample reads of an episode costs the
// whole record: it is read, its CRC checked, and decoded, and the
// episode's layout is kept (where each step's encoded image lies in the
// shard, and the instructions, actions and states themselves, for up to
// MaxCachedSteps steps, least recently used dropped first). Any other step
// of a known episode costs one positioned read of its image. Those reads
// are not covered by the record's CRC, which was checked when the layout
// was made.
//
// # Writing
//
// FeaturesJSON writes the features.json of a Layout (image size and
// format, action and state sizes, an instruction), and EpisodeExample
// flattens the Steps of an episode into the tf.train.Example of one
// record, for tfrecord.Writer: with them a program writes an RLDS folder
// in the layout this package reads, as the tests do. (The output has not
// been checked against TFDS itself.)
//
// # Bad input
//
// A record whose data fails its CRC ("crc-mismatch"), that is cut by the
// end of the shard ("truncated-record") or that is not a tf.train.Example
// ("bad-example") counts as one bad sample; a step with an image that does
// not decode ("corrupt-image"), an action of the wrong length
// ("bad-action") or a NaN or infinite action ("non-finite-action") is a
// bad sample as well.
package rlds
