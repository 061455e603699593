// Package synthvla generates a procedural tabletop manipulation data set
// for vision–language–action encoders: small RGB images of a table with
// a few objects and a two-finger hand, an instruction per episode, and
// the 7-dimensional action a scripted controller takes at each step to
// carry the instruction out. It is pure Go and needs no assets, so every
// copy of the binary can write it (infonce synth-vla).
//
// # The world
//
// The table is the unit square seen from straight above, x to the right,
// y down the image, z up. On it stand 2 to 5 prisms of height
// ObjectHeight, of distinct kinds: a Shape (square, circle, triangle,
// star, ring, cross) and a Colour (red, green, blue, yellow, purple,
// orange), with a footprint radius between MinRadius and MaxRadius and a
// turn about z. The hand has a pose (x, y, z, yaw) and an aperture.
// State.Apply is the physics of one step: the hand moves, its fingers open
// or close by half a stroke, a close command at an object grasps it, a
// held object follows the hand, an open command drops it onto what is
// below (another object's top or the table), and a closed empty hand low
// over the table is a fist that pushes the objects it meets out of its
// way, swept in substeps so that it cannot tunnel through one.
//
// # Tasks and instructions
//
// A Task is a Family and its objects X (acted on) and Y (the reference):
//
//	push-left, push-right    push X to the left / right of Y
//	push-behind, push-front  push X behind / in front of Y (up / down the image)
//	place-on                 pick X and place it on Y, anywhere on its top
//	stack                    stack X on Y, centred and turned to match
//	rotate                   rotate X clockwise by half its symmetry period
//	point                    hover the open hand over X
//	lift                     lift X and hold it up
//
// Task.ID numbers the exact tasks (family, X, Y); TaskOf inverts it.
// Task.Holds is the predicate of the instruction on a scene (X wholly left
// of Y and beside it; X resting on Y's top; …), which also requires every
// other object to be where it was. Task.Instruction draws one of five
// paraphrases of the family ("slide the violet plus to the left side of
// the blue ring") with synonyms of the shapes and colours.
//
// # The controller
//
// Plan turns a task into waypoints of the hand with gripper commands
// (over X, down, close, up, over the target, down, open, up; a push goes
// down behind X and along the line to the target), and Controller is a
// state machine over them that moves the hand straight towards the
// current waypoint at a bounded speed. The action of a step is
//
//	(dx, dy, dz, droll, dpitch, dyaw, gripper)
//
// in table units and radians, |dx|, |dy| ≤ VMaxXY, |dz| ≤ VMaxZ,
// |dyaw| ≤ VMaxYaw, droll = dpitch = 0 (the hand always looks down) and
// gripper 1 to close, 0 to open. Frame t shows the scene before action t;
// the last frame's action keeps the hand still. An episode runs MinFrames
// to MaxFrames frames (short ones end with still frames). NewEpisode
// returns ErrController if the final scene does not satisfy the
// instruction, which the tests show does not happen; replaying the
// actions with State.Apply from the first frame gives every frame.
//
// # Rendering
//
// Every shape is a signed distance function; a pixel is covered by the
// fraction clamp(½ − d, 0, 1) of its area, d the signed distance of its
// centre to the outline in pixels, which anti-aliases every edge. Objects
// are drawn from the lowest up, each over a soft shadow that falls farther
// the higher it stands, raised objects slightly larger and lighter; the
// hand is drawn last. Each episode has a Look: one of eight table colours,
// a texture (plain, wood grain, checker, speckle), and a light with a
// brightness, a colour temperature and a gradient across the table.
//
// # Splits
//
// HeldOut lists six object–colour combinations (each shape once, each
// colour once) that no training scene shows; every validation episode's
// instruction names one of them as X or Y. Retrieval on the validation
// split thus measures whether a model composes "red" and "star", which it
// saw only apart.
//
// # Scenes with several tasks
//
// NewSceneEpisode gives a scene several episodes (variants): variant 0 is
// NewEpisode's episode of the scene's index, and variant v > 0 starts
// from the same objects, poses, hand and look, so from the same first
// image, and carries out another task, drawn from (seed, split, scene, v)
// among those that fit the scene and differ from the earlier variants'
// tasks and instructions (naming a held-out kind in the validation
// split). Such siblings are hard negatives of each other: the same image
// with another instruction and other actions (infonce train
// --scene-negatives puts them in one batch).
//
// # Output
//
// Generate writes the training and validation splits to OUT/train and
// OUT/val, OUT/info.json (the counts and the specs to open them with) and
// OUT/tasks.json (dataset.TasksFile: the nine families, each with its
// paraphrase templates as prompts with generic objects, "push an object
// to the left of another object", and the block of task ids of each
// family), which the evaluation reads for zero-shot task recognition. Episode i of a split is NewEpisode(seed, split, i, size), a pure
// function of its key, so the bytes depend on the options alone, not on
// the number of workers; with SceneVariants V > 1 it is variant i mod V of
// scene ⌊i/V⌋, and the metadata names the scene (the wds json's scene,
// the rlds episode_metadata/scene_id). The formats:
//
//	wds    shard-NNNNNN.tar of EpisodesPerShard episodes; per step the
//	       members KEY.png, KEY.txt (the instruction), KEY.action.npy
//	       (float32 [7]), KEY.state.npy (float32 [5]: the hand's x, y, z,
//	       yaw, aperture) and KEY.json (Meta: episode, step, episode_len,
//	       task, family, split, the objects with their roles), KEY =
//	       EEEEEE_SSS (episode, step); read as wds:OUT/train/shard-{…}.tar.
//	rlds   features.json, dataset_info.json and
//	       synth_vla-SPLIT.tfrecord-NNNNN-of-MMMMM, one record per episode
//	       written with package rlds's EpisodeExample (image, instruction,
//	       action, state per step) plus episode_metadata (episode and task
//	       ids, family, objects); read as rlds:OUT/train, and rlds:OUT/val
//	       with the split "val".
//
// The rlds reader numbers episodes by their position and reads the task id
// from episode_metadata/task_id; both readers give Episode, Step,
// EpisodeLen, Task, image, text, action and state as written, and Scene
// when the data set names scenes.
//
// # Reproducibility
//
// Every random choice comes from a PCG seeded by a hash of (seed, split,
// episode); the float arithmetic is the same on every run of one
// architecture. (A platform whose compiler fuses multiply–adds could round
// differently; the tests check the bytes on the machine they run on.)
package synthvla
